"""Upstream HTTP clients side by side: CPU per forwarded request and per stream event, and cancellation.

    uv run --with pyqwest --with pyreqwest --with httpx2 python bench/clients.py

Each client sends the same chat completion to the simulator, 32 at a time, reading the
answer as the proxy does (as a stream, since the proxy cannot know in advance whether an
answer is SSE). Then 100 streams of 200 events each, 32 at a time, read as they arrive
(CPU per event). The client process is pinned to core 0 and the simulator to core 1;
rounds alternate between clients so drift on a shared machine hits all of them alike.
CPU is the client process's own (all threads, from /proc). The last column says whether
cancelling a call while it waits for the upstream's headers closes the upstream
connection (the simulator counts requests whose caller left). aiohttp is grok-proxy's
engine (a dependency); the others are installed only for this comparison.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

HOST = "127.0.0.1"
BODY = b'{"model":"grok-4","messages":[{"role":"user","content":"Say hello"}]}'
HEADERS = {"authorization": "Bearer xai-bench", "content-type": "application/json"}
CLIENTS = ("aiohttp", "pyqwest", "pyreqwest", "httpx2")
STREAM = b'{"model":"grok-4@chunks=196,pace=0","stream":true,"messages":[{"role":"user","content":"Count"}]}'
STREAM_EVENTS = 200  # 196 content chunks, role, finish, usage-less end, [DONE]

Send = Callable[[str, bytes], Awaitable[None]]


async def make(name: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            skip_auto_headers=("accept-encoding", "user-agent", "content-type", "accept"),
        )

        async def send_ah(url: str, body: bytes) -> None:
            async with session.post(url, data=body, headers=HEADERS) as response:
                async for _ in response.content.iter_any():
                    pass

        return send_ah, session.close
    if name == "pyqwest":
        import pyqwest

        transport = pyqwest.HTTPTransport(
            enable_gzip=False, enable_brotli=False, enable_zstd=False, enable_otel=False
        )

        async def send_pq(url: str, body: bytes) -> None:
            request = pyqwest.Request("POST", url, pyqwest.Headers(list(HEADERS.items())), body)
            response = await transport.execute(request)
            async for _ in response.content:
                pass
            await response.aclose()

        return send_pq, transport.aclose
    if name == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        client = ClientBuilder().gzip(False).brotli(False).zstd(False).deflate(False).build()

        async def send_pr(url: str, body: bytes) -> None:
            builder = client.post(url).headers(HEADERS).body_bytes(body)
            async with builder.streamed_read_buffer_limit(1).build_streamed() as response:
                while await response.body_reader.read_chunk() is not None:
                    pass

        return send_pr, client.close
    import httpx2

    client2 = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1000))

    async def send_hx(url: str, body: bytes) -> None:
        async with client2.stream("POST", url, content=body, headers=HEADERS) as response:
            async for _ in response.aiter_raw():
                pass

    return send_hx, client2.aclose


def cpu_seconds() -> float:
    with open(f"/proc/{os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(name: str, url: str, count: int) -> tuple[float, float]:
    send, close = await make(name)
    limit = asyncio.Semaphore(32)

    async def one() -> None:
        async with limit:
            await send(url, BODY)

    await asyncio.gather(*(one() for _ in range(300)))  # warm the pool
    started, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(one() for _ in range(count)))
    wall, used = time.perf_counter() - started, cpu_seconds() - cpu
    await close()
    return count / wall, used / count * 1e6


async def per_event(name: str, url: str) -> float:
    """Client CPU per event of 100 streams of 200 events, 32 at a time."""
    send, close = await make(name)
    limit = asyncio.Semaphore(32)

    async def one() -> None:
        async with limit:
            await send(url, STREAM)

    await one()  # warm the pool
    cpu = cpu_seconds()
    await asyncio.gather(*(one() for _ in range(100)))
    used = cpu_seconds() - cpu
    await close()
    return used / (100 * STREAM_EVENTS) * 1e6


async def cancels(name: str, sim: str) -> bool:
    send, close = await make(name)
    async with httpx.AsyncClient() as control:
        await control.post(f"{sim}/_sim/reset")
    slow = b'{"model":"grok-4@delay=3000","messages":[{"role":"user","content":"hi"}]}'
    task = asyncio.ensure_future(send(f"{sim}/v1/chat/completions", slow))
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient() as control:
        stats = (await control.get(f"{sim}/_sim/stats")).json()
    closed: bool = stats["requests_cancelled"] == 1
    await close()
    return closed


def child(name: str, url: str, mode: str) -> str:
    """One measurement in a process of its own, pinned to the client core; a crash is
    reported as such (pyreqwest has aborted here on 200-event streams)."""
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, __file__, "--child", name, url, "4000", mode],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return f"failed (exit {done.returncode})"
    return done.stdout.strip()


def main() -> None:
    if "--child" in sys.argv:
        name, url, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        if sys.argv[5] == "cancel":
            print(asyncio.run(cancels(name, url)))
        elif sys.argv[5] == "stream":
            print(f"{asyncio.run(per_event(name, url)):.1f}")
        else:
            rate, cpu = asyncio.run(throughput(name, url, count))
            print(f"{rate:.0f} {cpu:.0f}")
        return
    port = 9187
    sim = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "grok_proxy", "simulate", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/_sim/stats")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        results: dict[str, dict[str, list[str]]] = {
            name: {"load": [], "stream": []} for name in CLIENTS
        }
        for _ in range(3):
            for name in CLIENTS:
                for mode in ("load", "stream"):
                    results[name][mode].append(child(name, f"{base}/v1/chat/completions", mode))
        print(
            "| client | req/s (3 rounds) | client CPU per request (µs) "
            "| client CPU per stream event (µs) | cancel closes upstream |"
        )
        print("|---|---|---|---|---|")
        for name in CLIENTS:
            closed = subprocess.run(
                [sys.executable, __file__, "--child", name, base, "0", "cancel"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            loads = [row.split() for row in results[name]["load"]]
            failed = [row for row in results[name]["load"] if row.startswith("failed")]
            rates = ", ".join(f"{int(row[0]):,}" for row in loads if row[0] != "failed")
            cpus = ", ".join(row[1] for row in loads if row[0] != "failed")
            if failed:
                rates = f"{rates} ({', '.join(failed)})"
            events = ", ".join(results[name]["stream"])
            closes = "yes" if closed == "True" else "no"
            print(f"| {name} | {rates} | {cpus} | {events} | {closes} |")
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
