"""The benchmark's table: every figure of one run, its ratios, and the issue's target beside it."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.measure import Peaks
from bench.plain import Load
from bench.processes import CORES, run_tool
from bench.streams import Streams
from bench.ws_sessions import Relay

BEGIN = "<!-- bench/run.py writes from here -->"
END = "<!-- bench/run.py writes up to here -->"
DIRECT, NGINX, PROXY, LITELLM = "direct", "nginx", "grok-proxy", "LiteLLM"


@dataclass
class StreamRun:
    """One kind of stream load, run against several targets."""

    title: str
    events_each: int
    by_target: dict[str, Streams] = field(default_factory=dict)


@dataclass
class Results:
    machine: str
    quick: bool
    plain_c1: dict[str, Load] = field(default_factory=dict)
    plain_c32: dict[str, Load] = field(default_factory=dict)
    paced: StreamRun | None = None
    burst: StreamRun | None = None
    slow: StreamRun | None = None
    ws: Relay | None = None
    litellm_streams: StreamRun | None = None
    proxy_peak_rss_mb: float = math.nan
    notes: list[str] = field(default_factory=list)


def machine(litellm_version: str | None) -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("fastapi", "uvicorn", "uvloop", "httptools", "pydantic")
    )
    nginx_version = run_tool(["nginx", "-v"]).stderr.strip().replace("nginx version: ", "")
    wrk_version = run_tool(["wrk", "-v"]).stdout.split("\n")[0].split(" [")[0]
    peer = f"; LiteLLM {litellm_version}" if litellm_version else ""
    return (
        f"{platform.node()}: {CORES} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {versions}; {nginx_version}{peer}; load: "
        f"{wrk_version}, aiohttp {metadata.version('aiohttp')} (stream client)"
    )


def _us(value: float) -> str:
    return f"{value:,.1f} µs" if value < 100 else f"{value:,.0f} µs"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


class Table:
    """Rows of | measurement | direct | nginx | grok-proxy | LiteLLM | target | met |."""

    COLUMNS = (DIRECT, NGINX, PROXY, LITELLM)

    def __init__(self) -> None:
        self.rows: list[str] = []

    def row(self, measurement: str, cells: dict[str, str], target: str = "", met: str = "") -> None:
        values = [cells.get(column, "") for column in self.COLUMNS]
        self.rows.append(f"| {measurement} | {' | '.join(values)} | {target} | {met} |")

    def render(self) -> str:
        head = "| measurement | " + " | ".join(self.COLUMNS) + " | target | met |"
        rule = "|---" * (len(self.COLUMNS) + 3) + "|"
        return "\n".join([head, rule, *self.rows])


def _plain(table: Table, r: Results) -> None:
    c1, c32 = r.plain_c1, r.plain_c32
    if PROXY in c32:
        cpu = {
            name: _us(load.cpu_us["proxy"]) for name, load in c32.items() if "proxy" in load.cpu_us
        }
        if NGINX in c32:
            cpu[PROXY] += f" ({c32[PROXY].cpu_us['proxy'] / c32[NGINX].cpu_us['proxy']:.1f}x nginx)"
        table.row(
            "plain: proxy CPU per request (32 connections, all threads)",
            cpu,
            "≤ 200 µs",
            _met(c32[PROXY].cpu_us["proxy"] <= 200),
        )
    if DIRECT in c1:
        base = c1[DIRECT].p50_ms
        cells = {DIRECT: f"{base:.3f} ms"}
        for name, load in c1.items():
            if name != DIRECT:
                cells[name] = f"{load.p50_ms:.3f} ms (+{load.p50_ms - base:.3f})"
        met = _met(c1[PROXY].p50_ms - base <= 0.3) if PROXY in c1 else ""
        table.row("plain, 1 connection: p50 (added to direct)", cells, "added ≤ 0.3 ms", met)
    if c32:
        cells = {name: f"{load.requests_per_s:,.0f}" for name, load in c32.items()}
        target, met = "≥ 50x LiteLLM", ""
        if PROXY in c32:
            proxy = c32[PROXY].requests_per_s
            shares = [
                f"{proxy / c32[n].requests_per_s:.0%} of {n}" for n in (DIRECT, NGINX) if n in c32
            ]
            if LITELLM in c32:
                multiple = proxy / c32[LITELLM].requests_per_s
                shares.append(f"**{multiple:.0f}x LiteLLM**")
                met = _met(multiple >= 50)
            cells[PROXY] += f" ({', '.join(shares)})" if shares else ""
        table.row("plain, 32 connections: req/s", cells, target, met)
        table.row(
            "plain, 32 connections: p50 / p99",
            {n: f"{load.p50_ms:.2f} / {load.p99_ms:.2f} ms" for n, load in c32.items()},
        )
        table.row(
            "plain: failed requests (1 and 32 connections)",
            {
                n: str(load.errors + c1[n].errors if n in c1 else load.errors)
                for n, load in c32.items()
            },
        )


def _streams(table: Table, run: StreamRun, targets: bool) -> None:
    """Rows for one stream load; `targets` puts the paced streams' targets beside them."""
    runs = run.by_target
    direct = runs.get(DIRECT)
    title = run.title
    table.row(
        f"{title}: completed with [DONE]",
        {n: f"{s.completed}/{s.started}" for n, s in runs.items()},
    )
    cpu = {}
    for name, streams in runs.items():
        watched = "simulator" if name == DIRECT else "proxy"
        if watched in streams.cpu_us_per_event:
            cpu[name] = _us(streams.cpu_us_per_event[watched])
    if DIRECT in cpu:
        cpu[DIRECT] += " (simulator)"
    proxy = runs.get(PROXY)
    met = ""
    if targets and proxy is not None and "proxy" in proxy.cpu_us_per_event:
        met = _met(proxy.cpu_us_per_event["proxy"] <= 15)
    table.row(f"{title}: CPU per relayed event", cpu, "≤ 15 µs" if targets else "", met)
    wall = {}
    for name, streams in runs.items():
        wall[name] = f"{streams.wall_s:.2f} s"
        if direct is not None and name != DIRECT:
            wall[name] += f" ({streams.wall_s / direct.wall_s:.2f}x)"
    met = ""
    if targets and proxy is not None and direct is not None:
        met = _met(proxy.wall_s <= 1.1 * direct.wall_s)
    table.row(f"{title}: wall", wall, "≤ 1.1x direct" if targets else "", met)
    met = ""
    if targets and proxy is not None and direct is not None:
        met = _met(proxy.first_byte_p99_s <= direct.first_byte_p99_s + 0.3)
    table.row(
        f"{title}: first byte p50 / p99",
        {n: f"{s.first_byte_p50_s:.3f} / {s.first_byte_p99_s:.3f} s" for n, s in runs.items()},
        "p99 ≤ direct + 0.3 s" if targets else "",
        met,
    )


def _slow(table: Table, run: StreamRun) -> None:
    runs = run.by_target
    direct, proxy = runs.get(DIRECT), runs.get(PROXY)
    title = run.title
    table.row(
        f"{title}: completed with [DONE]",
        {n: f"{s.completed}/{s.started}" for n, s in runs.items()},
        "all",
        _met(all(s.completed == s.started for s in runs.values())),
    )
    wall = {n: f"{s.wall_s:.1f} s" for n, s in runs.items()}
    met = ""
    if direct and proxy:
        wall[PROXY] += f" ({proxy.wall_s / direct.wall_s:.2f}x)"
        met = _met(proxy.wall_s <= 1.1 * direct.wall_s)
    table.row(f"{title}: wall", wall, "≤ 1.1x direct", met)
    met = _met(proxy.first_byte_p99_s <= direct.first_byte_p99_s + 1) if direct and proxy else ""
    table.row(
        f"{title}: first byte p50 / p99",
        {n: f"{s.first_byte_p50_s:.2f} / {s.first_byte_p99_s:.2f} s" for n, s in runs.items()},
        "p99 ≤ direct + 1 s",
        met,
    )
    cpu = {
        n: _us(s.cpu_us_per_event["proxy"])
        for n, s in runs.items()
        if "proxy" in s.cpu_us_per_event
    }
    table.row(f"{title}: CPU per relayed event (connection set-up included)", cpu)
    peaks: dict[str, Peaks] = {n: s.peaks for n, s in runs.items() if s.peaks is not None}
    table.row(
        f"{title}: proxy peak RSS",
        {n: f"{p.rss_mb:.0f} MB" for n, p in peaks.items()},
        "≤ 400 MB",
        _met(peaks[PROXY].rss_mb <= 400) if PROXY in peaks else "",
    )
    table.row(
        f"{title}: proxy peak open descriptors",
        {n: f"{p.descriptors:,}" for n, p in peaks.items()},
        "< 20,000 (hard limit)",
    )
    table.row(
        f"{title}: proxy peak upstream connections (ESTABLISHED to the simulator)",
        {n: f"{p.upstream_connections:,}" for n, p in peaks.items()},
    )


def _ws(table: Table, ws: Relay) -> None:
    pacing = ws.pacing
    title = f"WebSocket, {pacing.sessions} sessions x {pacing.messages} echoes, {pacing.pace:g} ms"
    expected = pacing.sessions * pacing.messages
    table.row(
        f"{title}: sessions completed, echoes",
        {
            DIRECT: f"{ws.direct.completed}/{pacing.sessions}, {len(ws.direct.rtts)}/{expected}",
            PROXY: f"{ws.through.completed}/{pacing.sessions}, {len(ws.through.rtts)}/{expected}",
        },
    )
    table.row(
        f"{title}: proxy CPU per relayed message (either way)",
        {
            PROXY: f"{_us(ws.proxy_cpu_us_per_message)} ({2 * ws.proxy_cpu_us_per_message:.0f} per echo)"
        },
        "≤ 40 µs",
        _met(ws.proxy_cpu_us_per_message <= 40),
    )
    table.row(
        f"{title}: round trip added p50 / p99",
        {PROXY: f"+{ws.added_ms(0.5):.2f} / +{ws.added_ms(0.99):.2f} ms"},
    )


def render(r: Results) -> str:
    table = Table()
    _plain(table, r)
    if r.paced:
        _streams(table, r.paced, targets=True)
    if r.burst:
        _streams(table, r.burst, targets=False)
    if r.slow:
        _slow(table, r.slow)
    if r.ws:
        _ws(table, r.ws)
    if r.litellm_streams:
        _streams(table, r.litellm_streams, targets=False)
    if not math.isnan(r.proxy_peak_rss_mb):
        table.row(
            "grok-proxy peak RSS over plain, paced, burst and WebSocket",
            {PROXY: f"{r.proxy_peak_rss_mb:.0f} MB"},
        )
    lines = [
        f"Machine: {r.machine}.",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (quick run: correctness only, the figures mean nothing)' if r.quick else ''}.",
        "",
        table.render(),
    ]
    if r.notes:
        lines += ["", *r.notes]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, report: str) -> None:
    """Replace the generated part of `path`; the prose around it is kept."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{path} has lost its markers {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{report}{END}{tail}")
