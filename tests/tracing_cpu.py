"""CPU per request of the proxy with tracing off and on (docs/tracing.md).

    uv run python -m tests.tracing_cpu [requests]

Starts the simulator and, in turn, an untraced proxy and one exporting every span to an
OTLP receiver in this process; sends the same requests to each (plain chat completions,
then 5-chunk streams); a third proxy samples 10 % of traces (OTEL_TRACES_SAMPLER) over one keep-alive connection, and reads the proxy's CPU time
(user + system, its whole process tree) from /proc before and after. Each runs twice,
alternating, so a neighbour's load shows up as a spread rather than as a difference.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing

import httpx

from tests.otlp_receiver import Receiver, otlp_receiver
from tests.processes import Proxy, proxy, simulator

log = logging.getLogger("tracing_cpu")
KEY = "xai-bench-key-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")
CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "model": "grok-4@chunks=5", "stream": True}
WARM_UP = 50


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
        for mode in [*modes, *modes]:
            with proxy(sim.base_url, 1, log_level="warning", **modes[mode]) as running:
                run = Run(running, receiver, exporting=mode == "on")
                with closing(run.client):
                    chat = run.per_request_ms(count, run.chat)
                    stream = run.per_request_ms(count // 3, run.stream)
                results[mode].append((chat, stream))
        spans = len(receiver.spans)
    for mode, runs in results.items():
        for chat, stream in runs:
            log.warning("tracing %-16s chat %.3f ms CPU/request, stream %.3f", mode, chat, stream)
    log.warning("spans received: %d", spans)


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
