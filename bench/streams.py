"""Concurrent SSE streams from one or more client processes on the load core.

Each client process opens its share of the streams at once (aiohttp on uvloop), times the
first byte of each body, counts the events (blank-line separated) and checks that every
stream ends with `data: [DONE]`. Run as a module it is one such client:

    python -m bench.streams URL KEY MODEL COUNT OUT   # prints "ready", waits for a line,
                                                      # runs, writes its result to OUT (JSON)

The streams ask for the usage chunk themselves, so the proxy relays the simulator's events
unchanged: `grok-4@chunks=50` answers role, 50 pieces, finish, usage and [DONE]: 54 events.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

from bench.measure import Peaks, cpu_seconds, percentile
from bench.processes import KEY, LOAD_CORE, ROOT, pinned, raise_open_files_limit

DONE = b"data: [DONE]\n\n"
FAILURES_KEPT = 20  # per client process


def paced_model(chunks: int, pace_ms: int) -> str:
    """The simulator's model suffix for `chunks` pieces sent `pace_ms` apart."""
    return f"grok-4@chunks={chunks},pace={pace_ms}"


def events_per_stream(chunks: int) -> int:
    """Role, the pieces, finish, usage and [DONE]."""
    return chunks + 4


@dataclass
class Streams:
    started: int
    completed: int
    events: int
    first_byte_p50_s: float
    first_byte_p99_s: float
    wall_s: float
    failures: list[str] = field(default_factory=list)
    # CPU per relayed event (microseconds) of each watched process, over the whole run.
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)
    peaks: Peaks | None = None


@dataclass
class ClientResult:
    """What one client process saw (wall clock times, so processes can be merged)."""

    started_at: float
    ended_at: float
    completed: int = 0
    events: int = 0
    first_bytes: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed: int = 0  # all failures; `failures` keeps the first few


async def run_client(url: str, key: str, model: str, count: int) -> ClientResult:
    """`count` concurrent streams of `model`; each must end in [DONE]."""
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Count"}],
        }
    )
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    result = ClientResult(time.time(), 0.0)

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                tail = b""
                async for data in response.content.iter_any():
                    if not tail:
                        result.first_bytes.append(time.perf_counter() - started)
                    # Count separators across reads: keep the last byte of the previous one.
                    result.events += (tail[-1:] + data).count(b"\n\n")
                    tail = (tail + data)[-64:]
                if response.status == 200 and tail.endswith(DONE):
                    result.completed += 1
                else:
                    result.failures.append(f"status {response.status}, ended {tail[-40:]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.failures.append(repr(exc))

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(count)))
    result.ended_at = time.time()
    return result


def streams(
    url: str,
    model: str,
    count: int,
    *,
    processes: int = 1,
    key: str = KEY,
    watch: dict[str, int] | None = None,
) -> Streams:
    """`count` streams spread over `processes` clients pinned to the load core, all started
    together; CPU of each watched process is read over the run and divided by the events."""
    shares = [count // processes + (i < count % processes) for i in range(processes)]
    shares = [share for share in shares if share]
    directory = tempfile.TemporaryDirectory(prefix="bench-streams-")
    files = [Path(directory.name) / f"client-{i}.json" for i in range(len(shares))]
    clients = [
        subprocess.Popen(
            pinned(
                LOAD_CORE,
                [sys.executable, "-m", "bench.streams", url, key, model, str(n), str(out)],
            ),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for n, out in zip(shares, files, strict=True)
    ]
    try:
        for client in clients:  # each has imported aiohttp and raised its descriptor limit
            assert client.stdout is not None
            if client.stdout.readline().strip() != b"ready":
                raise RuntimeError("a stream client did not start")
        watch = watch or {}
        before = {name: cpu_seconds(pid) for name, pid in watch.items()}
        for client in clients:
            assert client.stdin is not None
            client.stdin.write(b"go\n")
            client.stdin.flush()
        for client in clients:
            client.wait()
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in watch.items()}
        if any(client.returncode for client in clients):
            raise RuntimeError("a stream client failed")
        results = [ClientResult(**json.loads(out.read_text())) for out in files]
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        directory.cleanup()
    first_bytes = sorted(value for result in results for value in result.first_bytes)
    events = sum(result.events for result in results)
    failures = [failure for result in results for failure in result.failures]
    failed = sum(result.failed for result in results)
    return Streams(
        started=count,
        completed=sum(result.completed for result in results),
        events=events,
        first_byte_p50_s=percentile(first_bytes, 0.5),
        first_byte_p99_s=percentile(first_bytes, 0.99),
        wall_s=max(r.ended_at for r in results) - min(r.started_at for r in results),
        failures=[*failures[:5], *([f"... {failed} failures in all"] if failed > 5 else [])],
        cpu_us_per_event={name: used / max(1, events) * 1e6 for name, used in spent.items()},
    )


def main() -> None:
    url, key, model, count, out = sys.argv[1:6]
    raise_open_files_limit()
    print("ready", flush=True)
    sys.stdin.readline()
    result = uvloop.run(run_client(url, key, model, int(count)))
    result.failed, result.failures = len(result.failures), result.failures[:FAILURES_KEPT]
    Path(out).write_text(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
