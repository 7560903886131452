"""CPU per request of the proxy with tracing off and on (docs/tracing.md).

    uv run python -m tests.tracing_cpu [requests]

Starts the simulator and, in turn, an untraced proxy and one exporting every span to an
OTLP receiver in this process; sends the same requests to each (plain chat completions,
then 5-chunk streams); a third proxy samples 10 % of traces (OTEL_TRACES_SAMPLER) over one keep-alive connection, and reads the proxy's CPU time
(user + system, its whole process tree) from /proc before and after. Each runs three times,
alternating, so a neighbour's load shows up as a spread rather than as a difference.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing

import httpx
import orjson
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from grok_proxy.calls.record import RequestRecord
from grok_proxy.observability.tracing import Tracing
from tests.otlp_receiver import Receiver, otlp_receiver
from tests.processes import Proxy, proxy, simulator

log = logging.getLogger("tracing_cpu")
KEY = "xai-bench-key-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")
CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "model": "grok-4@chunks=5", "stream": True}
WARM_UP = 50
ROUNDS = 3


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        todo.extend(children.get(current, []))
    return total / TICKS


class Run:
    """One proxy under measurement: sends requests, waits for their spans, reads its CPU."""

    def __init__(self, running: Proxy, receiver: Receiver, exporting: bool) -> None:
        self.pid = running.process.pid
        self.client = httpx.Client(
            base_url=running.api, headers={"authorization": f"Bearer {KEY}"}, timeout=30
        )
        self.receiver = receiver
        # Spans expected so far; None when nothing (off) or an unknown share (sampled) comes.
        self.expected: int | None = len(receiver.spans) if exporting else None

    def chat(self) -> None:
        self.client.post("/chat/completions", json=CHAT).raise_for_status()

    def stream(self) -> None:
        with self.client.stream("POST", "/chat/completions", json=STREAM) as answer:
            for _ in answer.iter_bytes():
                pass

    def exported(self, calls: int) -> None:
        """Wait until the spans of the last `calls` requests reached the receiver."""
        if self.expected is not None:
            self.expected += calls
            deadline = time.monotonic() + 30
            while len(self.receiver.spans) < self.expected and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.3)  # the last batch's export finishing (or a sampled proxy's)

    def per_request_ms(self, count: int, send: Callable[[], None]) -> float:
        """CPU per request, the export of the requests' spans (when on) included."""
        for _ in range(WARM_UP):  # connections, caches, the first batch export
            send()
        self.exported(WARM_UP)
        before = tree_cpu_seconds(self.pid)
        for _ in range(count):
            send()
        self.exported(count)
        return (tree_cpu_seconds(self.pid) - before) / count * 1000


def measure(count: int) -> None:
    with simulator() as sim, otlp_receiver() as receiver:
        on = {"otel_exporter_otlp_endpoint": receiver.url, "otel_bsp_schedule_delay": "100"}
        sampled = {
            **on,
            "otel_traces_sampler": "parentbased_traceidratio",
            "otel_traces_sampler_arg": "0.1",
        }
        modes: dict[str, dict[str, str]] = {"off": {}, "on": on, "on, 10 % sampled": sampled}
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for mode in [*modes] * ROUNDS:
            with proxy(sim.base_url, 1, log_level="warning", **modes[mode]) as running:
                run = Run(running, receiver, exporting=mode == "on")
                with closing(run.client):
                    chat = run.per_request_ms(count, run.chat)
                    stream = run.per_request_ms(count // 3, run.stream)
                results[mode].append((chat, stream))
        spans = len(receiver.spans)
    for mode, runs in results.items():
        chats, streams = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
        log.warning(
            "tracing %-16s ms CPU/request, median (range): chat %.3f (%.3f-%.3f), "
            "stream %.3f (%.3f-%.3f)",
            mode,
            statistics.median(chats),
            chats[0],
            chats[-1],
            statistics.median(streams),
            streams[0],
            streams[-1],
        )
    log.warning("spans received: %d", spans)


class TimedExporter(SpanExporter):
    """The OTLP/HTTP exporter, with the CPU time of its thread spent exporting."""

    def __init__(self, endpoint: str) -> None:
        self.otlp = OTLPSpanExporter(endpoint=endpoint)
        self.seconds = 0.0
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        started = time.thread_time()
        result = self.otlp.export(spans)
        self.seconds += time.thread_time() - started
        self.spans += len(spans)
        return result

    def shutdown(self) -> None:
        self.otlp.shutdown()  # type: ignore[no-untyped-call]


def tracing_work(count: int, sampler: str = "parentbased_always_on") -> None:
    """The tracing work of a chat completion in this process, apart from everything else:
    on the request's path (this thread) and in the exporter's thread (encoding, POST)."""
    # The SDK reads the sampler from the environment; the proxies started later must not.
    os.environ.update(OTEL_TRACES_SAMPLER=sampler, OTEL_TRACES_SAMPLER_ARG="0.1")
    try:
        exporter, path_us = _traced_chats(count)
    finally:
        del os.environ["OTEL_TRACES_SAMPLER"], os.environ["OTEL_TRACES_SAMPLER_ARG"]
    log.warning(
        "%s: %d spans exported of %d calls; CPU per call: request path %.0f us, "
        "export thread %.0f us",
        sampler,
        exporter.spans,
        count,
        path_us,
        exporter.seconds / count * 1e6,
    )


def _traced_chats(count: int) -> tuple[TimedExporter, float]:
    """`count` chat completions through tracing.py alone; the request path's CPU per call."""
    answer = orjson.dumps(
        {
            "id": "a",
            "model": "grok-4",
            "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5},
        }
    )
    record = {"model": "grok-4", "usage": {"prompt": 3, "completion": 5, "reasoning": 0}}
    with otlp_receiver() as receiver:
        exporter = TimedExporter(f"{receiver.url}/v1/traces")
        tracing = Tracing("https://api.x.ai/v1", exporter=exporter)
        spent, started = 0.0, time.thread_time()
        for done in range(count):
            if done % 1000 == 999:  # batches out before the queue (2048) overflows
                spent += time.thread_time() - started
                tracing.provider.force_flush()
                started = time.thread_time()
            scope = {"path": "/v1/chat/completions", "method": "POST", "headers": [], "state": {}}
            call = tracing.http_call(scope)
            assert call is not None
            call.forwarding(b"{}")
            start = [(b"content-type", b"application/json")]
            call.sent({"type": "http.response.start", "status": 200, "headers": start})
            call.sent({"type": "http.response.body", "body": answer, "more_body": False})
            call.end(RequestRecord("r", **record), 200)  # type: ignore[arg-type]
        path_us = (spent + time.thread_time() - started) / count * 1e6
        tracing.shutdown()
    return exporter, path_us


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    tracing_work(count * 5)
    tracing_work(count * 5, "parentbased_traceidratio")
    measure(count)
