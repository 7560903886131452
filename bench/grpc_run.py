"""The gRPC benchmark: xAI's gRPC API direct from the simulator and through the proxy, one run.

    uv run python -m bench.grpc_run            # ~1 minute on 2 cores
    uv run python -m bench.grpc_run --smoke    # seconds; checks correctness only

Layout as in bench/run.py: the proxy gets core 0; the simulator and this process (the
load, a grpc.aio client over one channel per target, as the SDK uses) share core 1.
Unary calls send a pre-serialized GetCompletion request and read raw bytes, so the client
spends its time on the call, not on protobuf. c=1 alternates direct and proxied calls
(drift on a shared machine hits both alike); c=32 and the streams run one target at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from xai_sdk.proto.v6 import chat_pb2

from bench.measure import cpu_seconds, peak_rss_mb
from bench.processes import HOST, LOAD_CORE, PROXY_CORE, free_port, pinned, process

KEY = "xai-bench-key"
METADATA = (("authorization", f"Bearer {KEY}"),)
UNARY = "/xai_api.Chat/GetCompletion"
STREAM = "/xai_api.Chat/GetCompletionChunk"


def request(model: str) -> bytes:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="Hi")])
    body: bytes = chat_pb2.GetCompletionsRequest(
        model=model, messages=[message]
    ).SerializeToString()
    return body


@contextmanager
def servers(smoke: bool) -> Iterator[tuple[str, str, int]]:
    """The simulator and the proxy in front of it: (direct target, proxy target, proxy pid)."""
    sim_http, sim_grpc = free_port(), free_port()
    proxy_http, proxy_grpc = free_port(), free_port()
    simulate = [sys.executable, "-m", "grok_proxy", "simulate", "--host", HOST]
    simulate += ["--port", str(sim_http), "--grpc-port", str(sim_grpc)]
    serve = [sys.executable, "-m", "grok_proxy", "serve", "--host", HOST, "--port", str(proxy_http)]
    serve += ["--grpc-port", str(proxy_grpc)]
    env = {
        "XAI_BASE_URL": f"http://{HOST}:{sim_http}/v1",
        "XAI_GRPC_URL": f"grpc://{HOST}:{sim_grpc}",
        "LOG_LEVEL": "warning",  # access lines off: the table measures relaying
    }
    with (
        process(pinned(LOAD_CORE, simulate), f"http://{HOST}:{sim_http}/_sim/stats"),
        process(pinned(PROXY_CORE, serve), f"http://{HOST}:{proxy_http}/health", env) as proxy,
    ):
        yield f"{HOST}:{sim_grpc}", f"{HOST}:{proxy_grpc}", proxy.pid


@dataclass
class Calls:
    latencies: list[float]
    seconds: float
    failed: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def unary(channel: grpc.aio.Channel, body: bytes, calls: Calls) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(UNARY)
    started = time.perf_counter()
    try:
        await call(body, metadata=METADATA, timeout=30)
    except grpc.aio.AioRpcError:
        calls.failed += 1
        return
    calls.latencies.append(time.perf_counter() - started)


async def sequential_pair(direct: str, proxied: str, count: int) -> tuple[Calls, Calls]:
    """c=1, alternating targets call by call."""
    body = request("grok-4")
    results = (Calls([], 0, 0), Calls([], 0, 0))
    async with grpc.aio.insecure_channel(direct) as a, grpc.aio.insecure_channel(proxied) as b:
        for _ in range(min(50, count)):  # warm-up: connections, caches
            await unary(a, body, Calls([], 0, 0))
            await unary(b, body, Calls([], 0, 0))
        for _ in range(count):
            for channel, calls in zip((a, b), results, strict=True):
                started = time.perf_counter()
                await unary(channel, body, calls)
                calls.seconds += time.perf_counter() - started
    return results


async def concurrent(target: str, workers: int, count: int) -> Calls:
    body = request("grok-4")
    calls = Calls([], 0, 0)
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.gather(*(unary(channel, body, Calls([], 0, 0)) for _ in range(workers)))

        async def worker() -> None:
            for _ in range(count // workers):
                await unary(channel, body, calls)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        calls.seconds = time.perf_counter() - started
    return calls


async def streams(target: str, count: int, chunks: int, pace_ms: int) -> tuple[int, float]:
    """`count` paced streams at once; (streams that delivered every chunk, seconds)."""
    body = request(f"grok-4@chunks={chunks},pace={pace_ms}")

    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(STREAM)

        async def one() -> int:
            received = 0
            try:
                async for _ in call(body, metadata=METADATA, timeout=60):
                    received += 1
            except grpc.aio.AioRpcError:
                return 0
            return int(received == chunks)

        started = time.perf_counter()
        done = await asyncio.gather(*(one() for _ in range(count)))
        return sum(done), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds; correctness only")
    args = parser.parse_args()
    n1, n32, n_streams = (20, 64, 20) if args.smoke else (1000, 4000, 500)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOAD_CORE)})
    with servers(args.smoke) as (direct, proxied, proxy_pid):
        one_direct, one_proxy = asyncio.run(sequential_pair(direct, proxied, n1))
        many_direct = asyncio.run(concurrent(direct, 32, n32))
        cpu_before = cpu_seconds(proxy_pid)
        many_proxy = asyncio.run(concurrent(proxied, 32, n32))
        cpu_per_call = (cpu_seconds(proxy_pid) - cpu_before) / max(1, len(many_proxy.latencies))
        streamed_direct = asyncio.run(streams(direct, n_streams, 20, 50))
        streamed_proxy = asyncio.run(streams(proxied, n_streams, 20, 50))
        rss = peak_rss_mb(proxy_pid)
    rows = [
        ("c=1 p50 ms", f"{one_direct.p50:.2f}", f"{one_proxy.p50:.2f}",
         f"{one_proxy.p50 - one_direct.p50:+.2f}"),
        ("c=1 p99 ms", f"{one_direct.percentile(0.99):.2f}", f"{one_proxy.percentile(0.99):.2f}",
         f"{one_proxy.percentile(0.99) - one_direct.percentile(0.99):+.2f}"),
        ("c=32 calls/s", f"{many_direct.rate:,.0f}", f"{many_proxy.rate:,.0f}",
         f"x{many_proxy.rate / many_direct.rate:.2f}" if many_direct.rate else "-"),
        ("c=32 p50 ms", f"{many_direct.p50:.2f}", f"{many_proxy.p50:.2f}",
         f"{many_proxy.p50 - many_direct.p50:+.2f}"),
        ("c=32 p99 ms", f"{many_direct.percentile(0.99):.2f}", f"{many_proxy.percentile(0.99):.2f}",
         f"{many_proxy.percentile(0.99) - many_direct.percentile(0.99):+.2f}"),
        (f"{n_streams} paced streams complete", f"{streamed_direct[0]}", f"{streamed_proxy[0]}", ""),
        (f"{n_streams} streams, seconds (1.0 s each)", f"{streamed_direct[1]:.2f}",
         f"{streamed_proxy[1]:.2f}", ""),
        ("failed calls", f"{one_direct.failed + many_direct.failed}",
         f"{one_proxy.failed + many_proxy.failed}", ""),
        ("proxy CPU per call at c=32, ms", "", f"{cpu_per_call * 1000:.3f}", ""),
        ("proxy peak RSS, MiB", "", f"{rss:.0f}", ""),
    ]  # fmt: skip
    print("| gRPC, unary GetCompletion and paced GetCompletionChunk | direct | proxy | added |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    failed = one_direct.failed + one_proxy.failed + many_direct.failed + many_proxy.failed
    if failed or streamed_proxy[0] != n_streams:
        sys.exit(1)


if __name__ == "__main__":
    main()
