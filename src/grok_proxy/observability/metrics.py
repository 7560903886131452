"""Prometheus metrics of every call (HTTP, WebSocket, gRPC), correct with several workers.

One observer (`Metrics`, serving.observers) counts every call once, as it ends, from its
record: HTTP requests in the `grok_proxy_request*` families, WebSocket sessions in
`grok_proxy_websocket_*`, gRPC calls in `grok_proxy_grpc_*`.

With `--workers N` the CLI points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the
workers start, so every worker writes its samples there and /metrics adds them up.
Label values that callers control (model names) are capped, so a flood of made-up model
names cannot grow the metrics without bound: a model gets its own label only once the
upstream accepted a request for it (a 2xx), at most MAX_MODELS of them and each at most
MAX_LABEL_LENGTH long; every other name counts as `other`.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import Scope

from grok_proxy.calls.record import GRPC, HTTP, WEBSOCKET, RequestRecord
from grok_proxy.calls.usage import TOKEN_KINDS, dollars
from grok_proxy.serving.observers import Finished

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
MAX_MODELS = 100
MAX_LABEL_LENGTH = 64

REQUESTS = Counter(
    "grok_proxy_requests_total",
    "Requests answered, by route, model and status.",
    ["route", "model", "status"],
)
DURATION = Histogram(
    "grok_proxy_request_duration_seconds",
    "Whole request, streams to their last byte.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_FIRST_BYTE = Histogram(
    "grok_proxy_upstream_first_byte_seconds",
    "From sending upstream to its response headers, retries included.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "grok_proxy_overhead_seconds",
    "The proxy's own time to the caller's first byte (total minus upstream).",
    ["route"],
    buckets=OVERHEAD_BUCKETS,
)
IN_FLIGHT = Gauge(
    "grok_proxy_in_flight_requests", "Requests being handled.", multiprocess_mode="livesum"
)
OPEN_STREAMS = Gauge(
    "grok_proxy_open_streams", "Streams being relayed.", multiprocess_mode="livesum"
)
UPSTREAM_ERRORS = Counter(
    "grok_proxy_upstream_errors_total", "Upstream failures, by kind.", ["kind"]
)
RETRIES = Counter("grok_proxy_retries_total", "Attempts beyond the first.", ["route"])
TOKENS = Counter(
    "grok_proxy_tokens_total", "Tokens from upstream usage reports.", ["model", "kind"]
)
COST = Counter(
    "grok_proxy_cost_dollars_total",
    "Cost as xAI stated it in its answers (usage.cost_in_usd_ticks), by model.",
    ["model"],
)
BILLED_USES = Counter(
    "grok_proxy_billed_uses_total",
    "Server-side tool uses and Live Search sources xAI reported (billed per use).",
    ["model", "kind"],
)
UNKNOWN_USAGE = Counter(
    "grok_proxy_streams_without_usage_total",
    "Streams whose token usage is unknown (no usage event; see CAPTURE_STREAM_USAGE).",
    ["model"],
)

# Shared mode: per member. Member names are set by the team's admins (or are key
# fingerprints for GROK_PROXY_API_KEYS), never by callers, so they need no cap.
MEMBER_REQUESTS = Counter(
    "grok_proxy_member_requests_total",
    "Requests counted per team member (shared mode), every protocol.",
    ["member"],
)
MEMBER_TOKENS = Counter(
    "grok_proxy_member_tokens_total",
    "Tokens used per team member (shared mode), by kind.",
    ["member", "kind"],
)
MEMBER_COST = Counter(
    "grok_proxy_member_cost_dollars_total",
    "Cost per team member (shared mode): as xAI stated it, else from its published prices.",
    ["member"],
)
MEMBER_BILLED_USES = Counter(
    "grok_proxy_member_billed_uses_total",
    "Server-side tool uses and Live Search sources per team member (shared mode).",
    ["member", "kind"],
)

# WebSocket sessions (relays/websocket.py), counted as each one ends.
SESSIONS_OPEN = Gauge(
    "grok_proxy_websocket_sessions_open",
    "WebSocket sessions open, from the upgrade request to the last close.",
    multiprocess_mode="livesum",
)
SESSIONS = Counter(
    "grok_proxy_websocket_sessions_total",
    "WebSocket sessions ended, by route, handshake status and close code.",
    ["route", "status", "close_code"],
)
WS_MESSAGES = Counter(
    "grok_proxy_websocket_messages_total",
    "WebSocket messages relayed, by direction (to_upstream, to_caller); counted as a session ends.",
    ["direction"],
)
WS_BYTES = Counter(
    "grok_proxy_websocket_bytes_total",
    "WebSocket message payload bytes relayed, by direction (to_upstream, to_caller); "
    "counted as a session ends.",
    ["direction"],
)
_WS_MESSAGES_UP = WS_MESSAGES.labels("to_upstream")
_WS_MESSAGES_DOWN = WS_MESSAGES.labels("to_caller")
_WS_BYTES_UP = WS_BYTES.labels("to_upstream")
_WS_BYTES_DOWN = WS_BYTES.labels("to_caller")

# gRPC calls (relays/grpc.py), counted as each one ends.
GRPC_CALLS = Counter(
    "grok_proxy_grpc_calls_total",
    "gRPC calls answered, by method and status code.",
    ["method", "code"],
)
GRPC_DURATION = Histogram(
    "grok_proxy_grpc_call_duration_seconds",
    "Whole gRPC call, streams to their end.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
GRPC_MESSAGES = Counter(
    "grok_proxy_grpc_messages_total",
    "gRPC messages relayed, by method and direction (`in` from callers, `out` to them).",
    ["method", "direction"],
)
GRPC_OPEN_CALLS = Gauge(
    "grok_proxy_grpc_open_calls", "gRPC calls being relayed.", multiprocess_mode="livesum"
)
# Callers name gRPC methods: past this many, new ones pool as `other`.
MAX_METHODS = 200

USAGE_KINDS = TOKEN_KINDS
BILLED_KINDS = ("server_side_tools", "sources")

_models: set[str] = set()
# Labelled children looked up once: `labels()` takes a lock and builds a tuple every call.
_tokens: dict[tuple[str, str], Counter] = {}
# Cost children by model, as the token children above.
_cost: dict[str, Counter] = {}


def model_label(model: str | None, accepted: bool = False) -> str:
    """The model's own label once an upstream accepted it (now, or before), else `other`."""
    if not model:
        return "-"
    if model in _models:
        return model
    if accepted and len(_models) < MAX_MODELS and len(model) <= MAX_LABEL_LENGTH:
        _models.add(model)
        return model
    return "other"


def count_member(member: str, usage: dict[str, int], cost_dollars: float) -> None:
    """One finished request of a team member, with its usage and cost."""
    MEMBER_REQUESTS.labels(member).inc()
    for kind in USAGE_KINDS:
        if usage.get(kind):
            MEMBER_TOKENS.labels(member, kind).inc(usage[kind])
    for kind in BILLED_KINDS:
        if usage.get(kind):
            MEMBER_BILLED_USES.labels(member, kind).inc(usage[kind])
    if cost_dollars:
        MEMBER_COST.labels(member).inc(cost_dollars)


class _RouteSeries:
    """The labelled children of one route, looked up once: `labels()` costs a lock each time."""

    __slots__ = ("duration", "overhead", "requests", "retries", "upstream")

    def __init__(self, route: str) -> None:
        self.duration = DURATION.labels(route)
        self.upstream = UPSTREAM_FIRST_BYTE.labels(route)
        self.overhead = OVERHEAD.labels(route)
        self.retries = RETRIES.labels(route)
        self.requests: dict[tuple[str, int], Counter] = {}


_routes: dict[str, _RouteSeries] = {}


def _series(route: str) -> _RouteSeries:
    series = _routes.get(route)
    if series is None:
        series = _routes[route] = _RouteSeries(route)
    return series


class Metrics:
    """The observer (observers.Observer) that counts every call in Prometheus, once."""

    def started(self, scope: Scope, record: RequestRecord) -> None:
        protocol = record.protocol
        if protocol == HTTP:
            IN_FLIGHT.inc()
        elif protocol == WEBSOCKET:
            SESSIONS_OPEN.inc()
        elif protocol == GRPC:
            GRPC_OPEN_CALLS.inc()

    def finished(self, request: Finished) -> None:
        record, status = request.record, request.status
        duration = request.ended - request.started
        if record.protocol == HTTP:
            IN_FLIGHT.dec()
            first_byte = request.first_byte
            assert isinstance(status, int)
            observe(
                record,
                status,
                duration,
                None if first_byte is None else first_byte - request.started,
            )
        elif record.protocol == WEBSOCKET:
            SESSIONS_OPEN.dec()
            observe_session(record, status)
        elif record.protocol == GRPC:
            GRPC_OPEN_CALLS.dec()
            observe_grpc_call(record, str(status), duration)


def close_code_label(code: int | None) -> str:
    """Close codes as metric labels: the registered ones exactly, applications' grouped."""
    if code is None:
        return "-"
    if code >= 4000:
        return "4xxx"
    if code >= 3000:
        return "3xxx"
    return str(code)


def observe_session(record: RequestRecord, status: int | str) -> None:
    """Everything one ended WebSocket session tells the metrics."""
    SESSIONS.labels(record.route or "other", str(status), close_code_label(record.close_code)).inc()
    if record.messages_in:
        _WS_MESSAGES_UP.inc(record.messages_in)
        _WS_BYTES_UP.inc(record.bytes_in)
    if record.messages_out:
        _WS_MESSAGES_DOWN.inc(record.messages_out)
        _WS_BYTES_DOWN.inc(record.bytes_out)


class _MethodSeries:
    """The labelled children of one gRPC method, looked up once (`labels()` takes a lock)."""

    __slots__ = ("calls", "duration", "label", "messages_in", "messages_out")

    def __init__(self, method: str) -> None:
        self.label = method
        self.duration = GRPC_DURATION.labels(method)
        self.messages_in = GRPC_MESSAGES.labels(method, "in")
        self.messages_out = GRPC_MESSAGES.labels(method, "out")
        self.calls: dict[str, Counter] = {}


_methods: dict[str, _MethodSeries] = {}


def method_series(method: str) -> _MethodSeries:
    """The metrics of `method`; callers choose methods, so past MAX_METHODS they pool as `other`."""
    series = _methods.get(method)
    if series is None:
        label = method if len(_methods) < MAX_METHODS else "other"
        series = _methods.get(label) or _MethodSeries(label)
        _methods[label] = series
    return series


def observe_grpc_call(record: RequestRecord, code: str, duration: float) -> None:
    """Everything one finished gRPC call tells the metrics."""
    series = method_series(record.route or "-")
    calls = series.calls.get(code)
    if calls is None:
        calls = series.calls[code] = GRPC_CALLS.labels(series.label, code)
    calls.inc()
    series.duration.observe(duration)
    if record.messages_in:
        series.messages_in.inc(record.messages_in)
    if record.messages_out:
        series.messages_out.inc(record.messages_out)


def observe(record: RequestRecord, status: int, duration: float, first_byte: float | None) -> None:
    """Everything one finished request tells the metrics."""
    route = record.route or "unmatched"
    series = _series(route)
    # Accepted: upstream answered, and not with an error (a made-up key or model gets 4xx).
    model = model_label(record.model, record.upstream_seconds is not None and status < 400)
    counter = series.requests.get((model, status))
    if counter is None:
        counter = series.requests[model, status] = REQUESTS.labels(route, model, str(status))
    counter.inc()
    series.duration.observe(duration)
    if record.upstream_seconds is not None:
        series.upstream.observe(record.upstream_seconds)
        if first_byte is not None:
            series.overhead.observe(max(0.0, first_byte - record.upstream_seconds))
    if record.attempts > 1:
        series.retries.inc(record.attempts - 1)
    if record.error_kind:
        UPSTREAM_ERRORS.labels(record.error_kind).inc()
    if record.usage:
        _count_usage(model, record.usage)
    elif record.streamed and status < 400:
        UNKNOWN_USAGE.labels(model).inc()


def _count_usage(model: str, usage: dict[str, int]) -> None:
    for kind in TOKEN_KINDS:
        count = usage.get(kind)
        if count:
            tokens = _tokens.get((model, kind))
            if tokens is None:
                tokens = _tokens[model, kind] = TOKENS.labels(model, kind)
            tokens.inc(count)
    for kind in BILLED_KINDS:
        if usage.get(kind):
            BILLED_USES.labels(model, kind).inc(usage[kind])
    cost = dollars(usage)
    if cost:
        spent = _cost.get(model)
        if spent is None:
            spent = _cost[model] = COST.labels(model)
        spent.inc(cost)


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone: a crashed one's streams stop counting."""
    # A worker killed outright (OOM, SIGKILL) runs no exit hook and uvicorn's supervisor has
    # none to offer, so the check happens where the numbers are read: at every scrape.
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, owned by someone else


def render() -> tuple[bytes, str]:
    """The exposition text, summed over every worker in multiprocess mode."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
