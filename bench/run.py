"""The grok-proxy benchmark: direct, nginx and grok-proxy against one simulator, in one run.

    uv run python bench/run.py                  # full run (5-15 min), rewrites docs/benchmarks.md
    uv run python bench/run.py --quick          # seconds; checks correctness only
    uv run python bench/run.py --only plain,streams --no-write    # iterate on some sections
    uv run python bench/run.py --litellm        # adds LiteLLM as a peer (installed in /tmp)

Sections: plain (wrk: CPU per request, added p50 at 1 connection, req/s at 32), streams
(1,000 concurrent streams of 54 events paced 20 ms), burst (1,000 unpaced streams opened
at once), slow (8,000 concurrent streams of one event a second for about 30 s), ws
(paced WebSocket sessions on the echo fault), litellm (req/s at 32 and 500 paced streams).

Layout on a 2-core machine: the proxy under test (grok-proxy, nginx or LiteLLM) gets core 0
to itself; the simulator and every load generator share core 1. CPU is user + system time
of each process and its children (all threads), read from /proc before and after each load.
Every figure is measured in this run; ratios compare columns of this run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import litellm_peer
from bench.measure import PeakSampler, peak_rss_mb
from bench.plain import Load, wrk
from bench.processes import (
    HOST,
    ROOT,
    checkout_of,
    free_port,
    nginx,
    pin_self_to_load_core,
    proxy,
    raise_open_files_limit,
    simulator,
)
from bench.report import (
    DIRECT,
    LITELLM,
    NGINX,
    PROXY,
    Results,
    StreamRun,
    machine,
    render,
    write_doc,
)
from bench.streams import Streams, events_per_stream, paced_model, streams
from bench.ws_sessions import Pacing, Relay, relay

log = logging.getLogger("bench")
SECTIONS = ("plain", "streams", "burst", "slow", "ws", "litellm")
DEFAULT_SECTIONS = ("plain", "streams", "burst", "slow", "ws")
CHAT = "/v1/chat/completions"
# The slow streams need more than the defaults allow one worker (MAX_CONNECTIONS 4096
# callers, XAI_POOL_SIZE 1,000 upstream connections); the proxy lowers MAX_CONNECTIONS to
# what its open-files limit holds at two descriptors a stream.
SLOW_PROXY_SETTINGS = {"MAX_CONNECTIONS": "10000", "XAI_POOL_SIZE": "10000"}


@dataclass
class Plan:
    """The sizes of one run: full by default, tiny with --quick."""

    seconds: int = 8
    streams: int = 1000
    chunks: int = 50  # + role, finish, usage and [DONE]: 54 events
    pace_ms: int = 20
    slow_streams: int = 8000
    slow_chunks: int = 30  # one event a second: 33 paced events, about 33 s
    slow_pace_ms: int = 1000
    slow_processes: int = 4
    ws: Pacing = field(default_factory=lambda: Pacing(100, 50, 20))
    litellm_streams: int = 500
    measures: bool = True  # False: a quick run, correctness only

    @classmethod
    def quick(cls) -> Plan:
        return cls(1, 20, 5, 5, 40, 3, 300, 2, Pacing(5, 5, 5), 20, measures=False)


def main() -> None:
    args = arguments()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls
    sections = set(args.only.split(",")) if args.only else set(DEFAULT_SECTIONS)
    if args.litellm:
        sections.add("litellm")
    if unknown := sections - set(SECTIONS):
        sys.exit(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    plan = Plan.quick() if args.quick else Plan()
    if args.streams:
        plan.streams = args.streams
    if args.slow:
        plan.slow_streams = args.slow
    if args.seconds:
        plan.seconds = args.seconds
    pin_self_to_load_core()
    raise_open_files_limit()  # the simulator and the load generators inherit it
    litellm_version = None
    if "litellm" in sections:
        litellm_peer.install()
        litellm_version = litellm_peer.version()
    results = Results(machine(litellm_version), args.quick)
    ab_report = ""
    sim_port = free_port()
    with simulator(sim_port) as sim:
        upstream = f"http://{HOST}:{sim_port}/v1"
        targets = {DIRECT: (f"http://{HOST}:{sim_port}{CHAT}", {"simulator": sim.pid})}
        if sections & {"plain", "streams", "burst"}:
            nginx_port = free_port()
            with nginx(nginx_port, sim_port) as nginx_pid:
                targets[NGINX] = (
                    f"http://{HOST}:{nginx_port}{CHAT}",
                    {"proxy": nginx_pid, "simulator": sim.pid},
                )
                for name in (DIRECT, NGINX):
                    common_sections(results, plan, sections, name, *targets[name])
        # A quick run measures nothing: its slow streams reuse this proxy (start-up takes seconds).
        quick_slow = args.quick and "slow" in sections
        if sections & {"plain", "streams", "burst", "ws"} or quick_slow:
            proxy_port = free_port()
            with proxy(proxy_port, upstream, log_level=args.log_level) as proc:
                url = f"http://{HOST}:{proxy_port}/api{CHAT}"
                watch = {"proxy": proc.pid, "simulator": sim.pid}
                common_sections(results, plan, sections, PROXY, url, watch)
                if "ws" in sections:
                    log.info("ws: %s sessions", plan.ws.sessions)
                    results.ws = relay(sim_port, sim.pid, proxy_port, proc.pid, plan.ws)
                results.proxy_peak_rss_mb = peak_rss_mb(proc.pid)
                if quick_slow:
                    results.slow = slow_section(plan, sim_port, sim.pid, (proxy_port, proc.pid))
        if "slow" in sections and not quick_slow:
            port = free_port()
            with proxy(port, upstream, log_level=args.log_level, env=SLOW_PROXY_SETTINGS) as proc:
                results.slow = slow_section(plan, sim_port, sim.pid, (port, proc.pid))
        if "litellm" in sections:
            litellm_section(results, plan, sim_port, sim.pid, args.log_level)
        if args.baseline:
            ab_report = render_ab(
                ab(args.baseline, upstream, sim.pid, plan, args.log_level), results
            )
    failures = check(results)
    if failures:  # part of the table: a run with failures is still a measurement
        results.notes.append("Failures in this run:\n\n" + "\n".join(f"- {f}" for f in failures))
    report = render(results) + ab_report
    print(report)
    complete = set(DEFAULT_SECTIONS) <= sections
    if complete and not args.quick and not args.no_write and args.log_level == "warning":
        write_doc(ROOT / "docs" / "benchmarks.md", report)
    if failures:
        sys.exit("benchmark failed:\n" + "\n".join(failures))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        "--smoke",
        action="store_true",
        help="seconds-long run that checks correctness only",
    )
    parser.add_argument(
        "--only", metavar="SECTIONS", help=f"comma-separated, from: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--litellm",
        action="store_true",
        help="add LiteLLM as a peer (installed into /tmp/litellm-venv)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--seconds", type=int, help="length of each wrk load (default 8)")
    parser.add_argument("--streams", type=int, help="paced and burst streams (default 1,000)")
    parser.add_argument("--slow", type=int, help="slow streams (default 8,000)")
    parser.add_argument(
        "--baseline",
        metavar="REVISION",
        help="also run the proxy of this git revision, alternating with today's (an A/B)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        help="the proxy's LOG_LEVEL (info adds an access line per request; implies --no-write)",
    )
    return parser.parse_args()


def common_sections(
    results: Results, plan: Plan, sections: set[str], name: str, url: str, watch: dict[str, int]
) -> None:
    """Plain load, paced streams and the burst against one target, CPU of `watch`."""
    log.info("%s: %s", name, ", ".join(sorted(sections & {"plain", "streams", "burst"})))
    if "plain" in sections:
        if plan.measures:
            wrk(url, 32, 1)  # warm-up
        results.plain_c1[name] = wrk(url, 1, plan.seconds)
        results.plain_c32[name] = wrk(url, 32, plan.seconds, watch)
    if "streams" in sections:
        if results.paced is None:
            events = events_per_stream(plan.chunks)
            title = f"{plan.streams:,} streams of {events} events paced {plan.pace_ms} ms"
            results.paced = StreamRun(title, events)
        model = paced_model(plan.chunks, plan.pace_ms)
        results.paced.by_target[name] = streams(url, model, plan.streams, watch=watch)
    if "burst" in sections:
        if results.burst is None:
            events = events_per_stream(plan.chunks)
            title = f"burst of {plan.streams:,} unpaced streams of {events} events"
            results.burst = StreamRun(title, events)
        model = paced_model(plan.chunks, 0)
        results.burst.by_target[name] = streams(url, model, plan.streams, watch=watch)


def slow_section(plan: Plan, sim_port: int, sim_pid: int, through: tuple[int, int]) -> StreamRun:
    """Many slow streams, direct and through the proxy (port, pid) sampled for its peaks."""
    seconds = (plan.slow_chunks + 3) * plan.slow_pace_ms / 1000
    run = StreamRun(
        f"{plan.slow_streams:,} slow streams (one event every {plan.slow_pace_ms} ms, "
        f"{seconds:.0f} s)",
        events_per_stream(plan.slow_chunks),
    )
    model = paced_model(plan.slow_chunks, plan.slow_pace_ms)
    log.info("slow: %s streams direct", plan.slow_streams)
    run.by_target[DIRECT] = streams(
        f"http://{HOST}:{sim_port}{CHAT}",
        model,
        plan.slow_streams,
        watch={"simulator": sim_pid},
        processes=plan.slow_processes,
    )
    port, pid = through
    log.info("slow: %s streams through grok-proxy", plan.slow_streams)
    with PeakSampler(pid, sim_port) as peaks:
        proxied = streams(
            f"http://{HOST}:{port}/api{CHAT}",
            model,
            plan.slow_streams,
            watch={"proxy": pid},
            processes=plan.slow_processes,
        )
    proxied.peaks = peaks
    run.by_target[PROXY] = proxied
    return run


def litellm_section(
    results: Results, plan: Plan, sim_port: int, sim_pid: int, log_level: str
) -> None:
    """LiteLLM's req/s at 32 connections, and paced streams direct, through grok-proxy and LiteLLM."""
    model = paced_model(plan.chunks, plan.pace_ms)
    upstream = f"http://{HOST}:{sim_port}/v1"
    events = events_per_stream(plan.chunks)
    run = StreamRun(
        f"{plan.litellm_streams:,} streams of {events} events paced {plan.pace_ms} ms", events
    )
    run.by_target[DIRECT] = streams(
        f"http://{HOST}:{sim_port}{CHAT}", model, plan.litellm_streams, watch={"simulator": sim_pid}
    )
    proxy_port = free_port()
    with proxy(proxy_port, upstream, log_level=log_level) as proc:
        url = f"http://{HOST}:{proxy_port}/api{CHAT}"
        run.by_target[PROXY] = streams(url, model, plan.litellm_streams, watch={"proxy": proc.pid})
    log.info("litellm: starting LiteLLM")
    with litellm_peer.litellm(free_port(), upstream, ["grok-4", model]) as peer:
        body = '{"model":"%s","messages":[{"role":"user","content":"Say hello"}]}'
        plain = body % peer.aliases["grok-4"]
        wrk(peer.url, 32, 1, key=peer.key, body=plain)  # warm-up
        # At least 3 s: LiteLLM answers a few dozen requests a second here.
        results.plain_c32[LITELLM] = wrk(
            peer.url, 32, max(3, plan.seconds), {"proxy": peer.pid}, key=peer.key, body=plain
        )
        run.by_target[LITELLM] = streams(
            peer.url,
            peer.aliases[model],
            plan.litellm_streams,
            key=peer.key,
            watch={"proxy": peer.pid},
        )
    results.litellm_streams = run


def check(results: Results) -> list[str]:
    """Correctness: every request succeeded, every stream ended with [DONE], every echo came back."""
    failures = []
    for loads in (results.plain_c1, results.plain_c32):
        for name, load in loads.items():
            if load.errors or not load.requests:
                failures.append(f"plain {name}: {load.errors} of {load.requests} requests failed")
    for run in (results.paced, results.burst, results.slow, results.litellm_streams):
        for name, outcome in run.by_target.items() if run else []:
            title = run.title if run else ""
            if outcome.completed != outcome.started:
                failures.append(
                    f"{title}, {name}: {outcome.completed}/{outcome.started} "
                    f"completed: {outcome.failures}"
                )
            # Every event relayed, none merged or split (LiteLLM re-frames what it relays).
            elif run and name != LITELLM and outcome.events != outcome.started * run.events_each:
                failures.append(
                    f"{title}, {name}: {outcome.events} events, "
                    f"not {outcome.started} x {run.events_each}"
                )
    if results.ws:
        expected = results.ws.pacing.sessions * results.ws.pacing.messages
        for name, session in (("direct", results.ws.direct), ("grok-proxy", results.ws.through)):
            if session.failed or len(session.rtts) != expected:
                failures.append(
                    f"WebSocket {name}: {len(session.rtts)}/{expected} echoes: {session.failed[:5]}"
                )
    return failures


@dataclass
class AB:
    """Today's proxy against another revision's, in alternating rounds of the same load."""

    revision: str
    today: list[Load] = field(default_factory=list)
    baseline: list[Load] = field(default_factory=list)
    today_c1: list[Load] = field(default_factory=list)
    baseline_c1: list[Load] = field(default_factory=list)
    # Paced and burst streams (the plan's count), when the run has those sections.
    today_paced: list[Streams] = field(default_factory=list)
    baseline_paced: list[Streams] = field(default_factory=list)
    today_burst: list[Streams] = field(default_factory=list)
    baseline_burst: list[Streams] = field(default_factory=list)
    # Paced WebSocket echo sessions (the plan's pacing).
    today_ws: list[Relay] = field(default_factory=list)
    baseline_ws: list[Relay] = field(default_factory=list)


def ab(revision: str, upstream: str, sim_pid: int, plan: Plan, log_level: str) -> AB:
    result = AB(revision)
    seconds = plan.seconds
    sim_port = int(upstream.rsplit(":", 1)[1].split("/", 1)[0])
    with checkout_of(revision) as tree:
        for _ in range(2):
            for loads, c1, paced, burst, ws, checkout in (
                (
                    result.today,
                    result.today_c1,
                    result.today_paced,
                    result.today_burst,
                    result.today_ws,
                    None,
                ),
                (
                    result.baseline,
                    result.baseline_c1,
                    result.baseline_paced,
                    result.baseline_burst,
                    result.baseline_ws,
                    tree,
                ),
            ):
                port = free_port()
                with proxy(port, upstream, log_level=log_level, checkout=checkout) as proc:
                    url = f"http://{HOST}:{port}/api{CHAT}"
                    wrk(url, 32, 1)  # warm-up
                    c1.append(wrk(url, 1, seconds))
                    loads.append(wrk(url, 32, seconds, {"proxy": proc.pid}))
                    watch = {"proxy": proc.pid}
                    model = paced_model(plan.chunks, plan.pace_ms)
                    paced.append(streams(url, model, plan.streams, watch=watch))
                    model = paced_model(plan.chunks, 0)
                    burst.append(streams(url, model, plan.streams, watch=watch))
                    ws.append(relay(sim_port, sim_pid, port, proc.pid, plan.ws))
    return result


def render_ab(result: AB, results: Results) -> str:
    def span(values: list[float], fmt: str) -> str:
        return " - ".join(format(value, fmt) for value in sorted(values))

    direct_c1 = results.plain_c1.get(DIRECT)
    base = direct_c1.p50_ms if direct_c1 else 0.0
    rows = [
        "",
        f"A/B against revision `{result.revision}`, alternating rounds (2 each):",
        "",
        "| | today | baseline |",
        "|---|---|---|",
        f"| 32 connections: req/s | {span([r.requests_per_s for r in result.today], ',.0f')} | "
        f"{span([r.requests_per_s for r in result.baseline], ',.0f')} |",
        f"| proxy CPU per request (us) | {span([r.cpu_us['proxy'] for r in result.today], '.0f')} | "
        f"{span([r.cpu_us['proxy'] for r in result.baseline], '.0f')} |",
        f"| 1 connection: {'added ' if direct_c1 else ''}p50 (ms) | "
        f"{span([r.p50_ms - base for r in result.today_c1], '.3f')} | "
        f"{span([r.p50_ms - base for r in result.baseline_c1], '.3f')} |",
    ]
    for label, today, baseline in (
        ("paced streams", result.today_paced, result.baseline_paced),
        ("burst of streams", result.today_burst, result.baseline_burst),
    ):
        cpu = [r.cpu_us_per_event["proxy"] for r in today]
        base_cpu = [r.cpu_us_per_event["proxy"] for r in baseline]
        rows += [
            f"| {label}: proxy CPU per event (us) | {span(cpu, '.1f')} | {span(base_cpu, '.1f')} |",
            f"| {label}: wall (s) | {span([r.wall_s for r in today], '.2f')} | "
            f"{span([r.wall_s for r in baseline], '.2f')} |",
            f"| {label}: first byte p99 (s) | "
            f"{span([r.first_byte_p99_s for r in today], '.3f')} | "
            f"{span([r.first_byte_p99_s for r in baseline], '.3f')} |",
        ]
    cpu = [r.proxy_cpu_us_per_message for r in result.today_ws]
    base_cpu = [r.proxy_cpu_us_per_message for r in result.baseline_ws]
    rows.append(
        f"| WebSocket: proxy CPU per relayed message (us) | {span(cpu, '.1f')} | "
        f"{span(base_cpu, '.1f')} |"
    )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
