"""What one upstream call costs in latency, one at a time: the floor under the proxy's added p50.

    uv run --with pyreqwest python bench/client_latency.py

Sequential requests (one in flight, as wrk's one-connection row) from a client pinned to
core 0 to the simulator on core 1, for each way of reading a small JSON answer:

- `asyncio`: a bare HTTP/1.1 exchange on asyncio streams, the floor any client pays;
- `pyqwest stream`: execute, then iterate the body to its end and close it (the adapter
  before it learned to stop at `Content-Length`);
- `pyqwest length`: execute, then read until `Content-Length` bytes arrived (today's
  adapter: no end-of-body read, no close);
- `pyqwest full`: pyqwest's buffered `Client.post` (one round trip into Rust, but it reads
  bodies of any size, so the proxy cannot bound its memory with it);
- `pyreqwest`: the streamed pyreqwest call (see docs/upstream-client.md for why not).

Each round trip between the event loop and a client's Rust runtime costs a thread handoff;
the differences between rows are those handoffs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import free_port, pinned, wait_for  # noqa: E402

HOST = "127.0.0.1"
BODY = b'{"model":"grok-4","messages":[{"role":"user","content":"Say hello"}]}'
HEADERS = [("authorization", "Bearer xai-bench"), ("content-type", "application/json")]
WAYS = ("asyncio", "pyqwest stream", "pyqwest length", "pyqwest full", "pyreqwest")

Call = Callable[[], Awaitable[None]]


async def make(way: str, port: int) -> Call:
    url = f"http://{HOST}:{port}/v1/chat/completions"
    if way == "asyncio":
        reader, writer = await asyncio.open_connection(HOST, port)
        head = "".join(f"{name}: {value}\r\n" for name, value in HEADERS)
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {HOST}\r\n{head}"
            f"content-length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY

        async def bare() -> None:
            writer.write(request)
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = next(line for line in lines if line.lower().startswith(b"content-length"))
            await reader.readexactly(int(length.split(b":")[1]))

        return bare
    if way == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        client = ClientBuilder().build()

        async def streamed_pyreqwest() -> None:
            builder = client.post(url).body_bytes(BODY)
            for name, value in HEADERS:
                builder = builder.header(name, value)
            async with builder.build_streamed() as response:
                while await response.body_reader.read_chunk() is not None:
                    pass

        return streamed_pyreqwest

    import pyqwest

    transport = pyqwest.HTTPTransport(
        enable_gzip=False, enable_brotli=False, enable_zstd=False, enable_otel=False
    )
    if way == "pyqwest full":
        full = pyqwest.Client(transport)

        async def buffered() -> None:
            await full.post(url, HEADERS, BODY)

        return buffered

    async def streamed() -> None:
        response = await transport.execute(
            pyqwest.Request("POST", url, pyqwest.Headers(HEADERS), BODY)
        )
        if way == "pyqwest stream":
            async for _ in response.content:
                pass
            await response.aclose()
            return
        left = int(response.headers.get("content-length", "0"))
        body = aiter(response.content)
        while left > 0:
            left -= len(await anext(body))

    return streamed


async def measure(way: str, port: int, count: int) -> tuple[float, float, float]:
    call = await make(way, port)
    for _ in range(200):  # connections open, caches warm
        await call()
    spent: list[float] = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await call()
        spent.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    spent.sort()
    return spent[count // 2] * 1e6, spent[int(count * 0.9)] * 1e6, cpu / count * 1e6


def main() -> None:
    if os.environ.get("BENCH_WAY"):  # one way, in a pinned child process
        import uvloop

        way, port, count = os.environ["BENCH_WAY"], int(sys.argv[1]), int(sys.argv[2])
        p50, p90, cpu = uvloop.run(measure(way, port, count))
        print(f"{p50:.0f} {p90:.0f} {cpu:.0f}")
        return
    port = free_port()
    simulate = [sys.executable, "-m", "grok_proxy", "simulate", "--host", HOST, "--port"]
    sim = subprocess.Popen(
        pinned("1", [*simulate, str(port), "--grpc-port", "0"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://{HOST}:{port}/_sim/stats")
        rows: dict[str, list[tuple[float, ...]]] = {way: [] for way in WAYS}
        for _ in range(3):  # alternating rounds: drift on a shared machine hits all alike
            for way in WAYS:
                out = subprocess.run(
                    pinned("0", [sys.executable, __file__, str(port), "2000"]),
                    env={**os.environ, "BENCH_WAY": way},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                rows[way].append(tuple(float(x) for x in out.split()))
    finally:
        sim.terminate()
        sim.wait()
    print("| way | p50 µs (3 rounds) | p90 µs | CPU µs per call (all threads) |")
    print("|---|---|---|---|")
    for way, runs in rows.items():
        cells = [", ".join(f"{run[i]:,.0f}" for run in runs) for i in range(3)]
        print(f"| {way} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
