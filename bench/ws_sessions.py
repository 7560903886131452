"""WebSocket benchmark: many concurrent paced sessions through the proxy and direct, one run.

    uv run python bench/ws_sessions.py                       # 500 sessions x 50 messages, 20 ms
    uv run python bench/ws_sessions.py --sessions 50 --messages 10   # a quick look

Each session opens `/v1/realtime` on the simulator's echo fault, then sends one
`input_audio_buffer.append` event (20 ms of 24 kHz PCM16, base64) every `--pace` ms and
times each echo. The same load runs direct to the simulator and through the proxy (one
worker, pinned to its own core as in bench/run.py); added latency is the difference of the
percentiles. The proxy's resident memory is sampled throughout and its peak reported.
bench/run.py folds a short run of this (`relay`) into its table, with the proxy's CPU per
relayed message: each echo is two, the caller's message up and the echo down.

Measured on the shared 2-core development VM (load average 4-10 from other work, so the
latencies are upper bounds): 500 x 50 x 20 ms, all 500 sessions and 25,000 echoes complete;
the proxy peaks at 85 MB RSS (61 MB idle) and spends about 180 µs of CPU per echoed message
(two relayed messages; the simulator spends 85 µs answering one), so one worker relays about
5,500 echoes (11,000 messages) a second. The offered 25,000 echoes a second saturate it and
the load generator alike (direct p50 77 ms, proxied 195 ms). One session alone: p50 0.58 ms
direct, 1.18 ms through the proxy (+0.6 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvloop
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import cpu_seconds, percentile  # noqa: E402
from bench.processes import HOST, KEY, free_port, proxy, simulator  # noqa: E402

AUDIO = base64.b64encode(bytes(range(256)) * 4)[:1280].decode()  # about 20 ms of PCM16
ECHO_PATH = "/v1/realtime?model=grok-voice-latest@echo"


@dataclass
class Result:
    """Round trips of every message of every session, and what went wrong."""

    rtts: list[float] = field(default_factory=list)
    completed: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class Pacing:
    """How many sessions, how many messages each, how far apart (milliseconds)."""

    sessions: int
    messages: int
    pace: float


async def session(url: str, index: int, pacing: Pacing, result: Result) -> None:
    # Spread the sessions over one pace interval, so they do not all send in lockstep.
    await asyncio.sleep(pacing.pace / 1000 * index / pacing.sessions)
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {KEY}"},
            open_timeout=60,
            compression=None,
            max_size=None,
        ) as ws:
            next_send = time.perf_counter()
            for seq in range(pacing.messages):
                message = orjson.dumps(
                    {"type": "input_audio_buffer.append", "audio": AUDIO, "seq": seq}
                ).decode()
                sent = time.perf_counter()
                await ws.send(message)
                echoed = await asyncio.wait_for(ws.recv(), 30)
                result.rtts.append(time.perf_counter() - sent)
                if echoed != message:
                    raise AssertionError("the echo differs from what was sent")
                next_send += pacing.pace / 1000
                await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
        result.completed += 1
    except Exception as error:
        result.failed.append(f"{type(error).__name__}: {error}")


async def load(url: str, pacing: Pacing) -> Result:
    result = Result()
    await asyncio.gather(*(session(url, i, pacing, result) for i in range(pacing.sessions)))
    return result


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def load_with_rss(url: str, pacing: Pacing, pid: int) -> tuple[Result, float]:
    peak = rss_mb(pid)
    task = asyncio.ensure_future(load(url, pacing))
    while not task.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.1)
    return task.result(), peak


@dataclass
class Relay:
    """The same paced sessions direct and through the proxy, with the proxy's CPU."""

    pacing: Pacing
    direct: Result
    through: Result
    direct_seconds: float
    proxy_seconds: float
    proxy_cpu_s: float
    simulator_cpu_s: float
    peak_rss_mb: float

    @property
    def relayed_messages(self) -> int:
        """Each echo is two relayed messages: the caller's up, the simulator's echo down."""
        return 2 * len(self.through.rtts)

    @property
    def proxy_cpu_us_per_message(self) -> float:
        return self.proxy_cpu_s / max(1, self.relayed_messages) * 1e6

    def added_ms(self, fraction: float) -> float:
        direct = percentile(sorted(self.direct.rtts), fraction)
        return (percentile(sorted(self.through.rtts), fraction) - direct) * 1000


def relay(sim_port: int, sim_pid: int, proxy_port: int, proxy_pid: int, pacing: Pacing) -> Relay:
    """Run `pacing` direct to the simulator, then through the proxy, in this process."""
    started = time.perf_counter()
    sim_cpu_before = cpu_seconds(sim_pid)
    direct = uvloop.run(load(f"ws://{HOST}:{sim_port}{ECHO_PATH}", pacing))
    direct_seconds = time.perf_counter() - started
    sim_cpu = cpu_seconds(sim_pid) - sim_cpu_before
    started = time.perf_counter()
    cpu_before = cpu_seconds(proxy_pid)
    through, peak_rss = uvloop.run(
        load_with_rss(f"ws://{HOST}:{proxy_port}{ECHO_PATH}", pacing, proxy_pid)
    )
    proxy_seconds = time.perf_counter() - started
    proxy_cpu = cpu_seconds(proxy_pid) - cpu_before
    return Relay(
        pacing, direct, through, direct_seconds, proxy_seconds, proxy_cpu, sim_cpu, peak_rss
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--pace", type=float, default=20.0, help="milliseconds between sends")
    args = parser.parse_args()
    pacing = Pacing(args.sessions, args.messages, args.pace)
    sim_port, proxy_port = free_port(), free_port()
    with (
        simulator(sim_port) as simulated,
        proxy(proxy_port, f"http://{HOST}:{sim_port}/v1", log_level="info") as proxied,
    ):
        idle_rss = rss_mb(proxied.pid)
        run = relay(sim_port, simulated.pid, proxy_port, proxied.pid, pacing)
    direct, through = run.direct, run.through
    expected = args.sessions * args.messages
    print(
        f"{args.sessions} sessions x {args.messages} messages, one every {args.pace:g} ms "
        f"({os.cpu_count()} cores)\n"
    )
    print("| | direct | through grok-proxy | added |")
    print("|---|---|---|---|")
    print(
        f"| sessions completed | {direct.completed}/{args.sessions} | "
        f"{through.completed}/{args.sessions} | |"
    )
    print(f"| messages echoed | {len(direct.rtts)}/{expected} | {len(through.rtts)}/{expected} | |")
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        d = percentile(sorted(direct.rtts), fraction) * 1000
        p = percentile(sorted(through.rtts), fraction) * 1000
        print(f"| round trip {name} (ms) | {d:.3f} | {p:.3f} | {p - d:+.3f} |")
    if direct.rtts and through.rtts:
        d, p = statistics.mean(direct.rtts) * 1000, statistics.mean(through.rtts) * 1000
        print(f"| round trip mean (ms) | {d:.3f} | {p:.3f} | {p - d:+.3f} |")
    print(f"| wall time (s) | {run.direct_seconds:.1f} | {run.proxy_seconds:.1f} | |")
    print(f"| proxy RSS (MB) | | idle {idle_rss:.0f}, peak {run.peak_rss_mb:.0f} | |")
    print(
        f"| proxy CPU per relayed message, either way (µs) | | "
        f"{run.proxy_cpu_us_per_message:.0f} ({run.proxy_cpu_s:.2f} s in all) | |"
    )
    # For scale: the simulator's cost per echo (one read and one write, no relay) direct.
    print(
        f"| simulator CPU per echoed message, direct (µs) | "
        f"{run.simulator_cpu_s / max(1, len(direct.rtts)) * 1e6:.0f} | | |"
    )
    for label, result in (("direct", direct), ("proxy", through)):
        for failure in sorted(set(result.failed))[:5]:
            print(f"{label} failure: {failure}")
    if direct.failed or through.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
