"""WebSocket benchmark: many concurrent paced sessions through the proxy and direct, one run.

    uv run python bench/ws_sessions.py                       # 500 sessions x 50 messages, 20 ms
    uv run python bench/ws_sessions.py --sessions 50 --messages 10   # a quick look

Each session opens `/v1/realtime` on the simulator's echo fault, then sends one
`input_audio_buffer.append` event (20 ms of 24 kHz PCM16, base64) every `--pace` ms and
times each echo. The same load runs direct to the simulator and through the proxy (one
worker, pinned to its own core as in bench/run.py); added latency is the difference of the
percentiles. The proxy's resident memory is sampled throughout and its peak reported.

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
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import HOST, KEY, free_port, proxy, simulator  # noqa: E402

AUDIO = base64.b64encode(bytes(range(256)) * 4)[:1280].decode()  # about 20 ms of PCM16


@dataclass
class Result:
    """Round trips of every message of every session, and what went wrong."""

    rtts: list[float] = field(default_factory=list)
    completed: int = 0
    failed: list[str] = field(default_factory=list)


async def session(url: str, index: int, args: argparse.Namespace, result: Result) -> None:
    # Spread the sessions over one pace interval, so they do not all send in lockstep.
    await asyncio.sleep(args.pace / 1000 * index / args.sessions)
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {KEY}"},
            open_timeout=60,
            compression=None,
            max_size=None,
        ) as ws:
            next_send = time.perf_counter()
            for seq in range(args.messages):
                message = orjson.dumps(
                    {"type": "input_audio_buffer.append", "audio": AUDIO, "seq": seq}
                ).decode()
                sent = time.perf_counter()
                await ws.send(message)
                echoed = await asyncio.wait_for(ws.recv(), 30)
                result.rtts.append(time.perf_counter() - sent)
                if echoed != message:
                    raise AssertionError("the echo differs from what was sent")
                next_send += args.pace / 1000
                await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
        result.completed += 1
    except Exception as error:
        result.failed.append(f"{type(error).__name__}: {error}")


async def load(url: str, args: argparse.Namespace) -> Result:
    result = Result()
    await asyncio.gather(*(session(url, i, args, result) for i in range(args.sessions)))
    return result


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def load_with_rss(url: str, args: argparse.Namespace, pid: int) -> tuple[Result, float]:
    peak = rss_mb(pid)
    task = asyncio.ensure_future(load(url, args))
    while not task.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.1)
    return task.result(), peak


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--pace", type=float, default=20.0, help="milliseconds between sends")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    sim_port, proxy_port = free_port(), free_port()
    path = "/v1/realtime?model=grok-voice-latest@echo"
    with (
        simulator(sim_port) as simulated,
        proxy(proxy_port, f"http://{HOST}:{sim_port}/v1", log_level="info") as proxied,
    ):
        idle_rss = rss_mb(proxied.pid)
        started = time.perf_counter()
        sim_cpu_before = cpu_seconds(simulated.pid)
        direct = asyncio.run(load(f"ws://{HOST}:{sim_port}{path}", args))
        direct_seconds = time.perf_counter() - started
        sim_cpu = cpu_seconds(simulated.pid) - sim_cpu_before
        started = time.perf_counter()
        cpu_before = cpu_seconds(proxied.pid)
        through, peak_rss = asyncio.run(
            load_with_rss(f"ws://{HOST}:{proxy_port}{path}", args, proxied.pid)
        )
        proxy_seconds = time.perf_counter() - started
        proxy_cpu = cpu_seconds(proxied.pid) - cpu_before
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
        d, p = percentile(direct.rtts, fraction) * 1000, percentile(through.rtts, fraction) * 1000
        print(f"| round trip {name} (ms) | {d:.3f} | {p:.3f} | {p - d:+.3f} |")
    if direct.rtts and through.rtts:
        d, p = statistics.mean(direct.rtts) * 1000, statistics.mean(through.rtts) * 1000
        print(f"| round trip mean (ms) | {d:.3f} | {p:.3f} | {p - d:+.3f} |")
    print(f"| wall time (s) | {direct_seconds:.1f} | {proxy_seconds:.1f} | |")
    print(f"| proxy RSS (MB) | | idle {idle_rss:.0f}, peak {peak_rss:.0f} | |")
    relayed = max(1, len(through.rtts))
    print(
        f"| proxy CPU per echoed message, both ways (µs) | | "
        f"{proxy_cpu / relayed * 1e6:.0f} ({proxy_cpu:.2f} s in all) | |"
    )
    # For scale: the simulator's cost per echo (one read and one write, no relay) direct.
    print(
        f"| simulator CPU per echoed message, direct (µs) | "
        f"{sim_cpu / max(1, len(direct.rtts)) * 1e6:.0f} | | |"
    )
    for label, result in (("direct", direct), ("proxy", through)):
        for failure in sorted(set(result.failed))[:5]:
            print(f"{label} failure: {failure}")
    if direct.failed or through.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
