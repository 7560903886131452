"""Pure ASGI middleware (Starlette's BaseHTTPMiddleware would hide client disconnects)."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grok_proxy import metrics
from grok_proxy.errors import send_error
from grok_proxy.logs import request_id
from grok_proxy.record import RequestRecord
from grok_proxy.tracing import Tracing

API_PREFIX = "/api/v1"
# The path as the caller sent it, kept in the scope where V1Alias rewrote it (access lines).
CALLER_PATH = "grok_proxy.caller_path"

access_log = logging.getLogger("grok_proxy.access")
# Longest model name written to an access line (longer ones are cut, with an ellipsis).
MAX_LOGGED_MODEL = 200

# A caller's X-Request-ID is kept when it is a plausible id, replaced otherwise (it ends
# up in log lines and upstream headers, so nothing that could forge either gets through).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class V1Alias:
    """Serves `/v1/...` as `/api/v1/...`: one set of routes, so matching stays cheap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/v1/"):
            scope = dict(scope)
            scope[CALLER_PATH] = scope["path"]
            scope["path"] = "/api" + scope["path"]
            raw_path = scope.get("raw_path")
            if raw_path is not None:
                scope["raw_path"] = b"/api" + raw_path
        await self.app(scope, receive, send)


class RequestLog:
    """Gives each request an id, returns it with Server-Timing, and logs one access line."""

    def __init__(
        self, app: ASGIApp, max_header_bytes: int = 65536, tracing: Tracing | None = None
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.tracing = tracing  # OpenTelemetry (tracing.py): None unless configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        if sum(len(name) + len(value) for name, value in scope["headers"]) > self.max_header_bytes:
            await _refuse_headers(send, self.max_header_bytes)
            return
        rid = request_id_for(_presented_request_id(scope))
        record = RequestRecord(request_id=rid)
        scope.setdefault("state", {})["record"] = record
        token = request_id.set(rid)
        status = 0
        first_byte: float | None = None
        trace = self.tracing.http_call(scope) if self.tracing is not None else None

        async def send_with_headers(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte = perf_counter()
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"server-timing", _server_timing(started, first_byte, record)))
                message = {**message, "headers": headers}
            if trace is not None:
                trace.sent(message)
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            metrics.IN_FLIGHT.dec()
            finished = perf_counter()
            metrics.observe(
                record,
                status or 499,
                finished - started,
                first_byte - started if first_byte is not None else None,
            )
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, record, status, started, first_byte)
            if trace is not None:
                trace.end(record, status)
            request_id.reset(token)


async def _refuse_headers(send: Send, limit: int) -> None:
    """431 in the error envelope: headers this large are not going upstream or into logs."""
    message = f"Request headers exceed the limit of {limit} bytes (setting MAX_HEADER_BYTES)."
    await send_error(send, 431, message, code="request_headers_too_large")


_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def request_id_for(presented: str | None) -> str:
    """The caller's request id when it is a plausible one, else a new one (HTTP and gRPC)."""
    if presented is not None and VALID_REQUEST_ID.fullmatch(presented):
        return presented
    # Unique per process by a random prefix and a counter: a tenth of uuid4's cost.
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def _presented_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            return text
    return None


def _server_timing(started: float, first_byte: float, record: RequestRecord) -> bytes:
    """The proxy's own time, and the upstream's, in the W3C Server-Timing format."""
    total_ms = (first_byte - started) * 1000
    if record.upstream_seconds is None:
        return f"proxy;dur={total_ms:.2f}".encode()
    upstream_ms = record.upstream_seconds * 1000
    return (
        f"proxy;dur={max(0.0, total_ms - upstream_ms):.2f}, upstream;dur={upstream_ms:.2f}".encode()
    )


def _log_access(
    scope: Scope, record: RequestRecord, status: int, started: float, first_byte: float | None
) -> None:
    duration_ms = (perf_counter() - started) * 1000
    path = scope["path"]
    client = scope.get("client")
    # A model name comes from the caller's body: a megabyte of it would make a megabyte line.
    model = record.model
    if model and len(model) > MAX_LOGGED_MODEL:
        model = model[:MAX_LOGGED_MODEL] + "…"
    fields = {
        "method": scope["method"],
        "path": path,
        "status": status or 499,
        "duration_ms": round(duration_ms, 2),
        "first_byte_ms": round((first_byte - started) * 1000, 2) if first_byte else None,
        "upstream_ms": round(record.upstream_seconds * 1000, 2)
        if record.upstream_seconds
        else None,
        "attempts": record.attempts or None,
        "model": model,
        "key": record.key_fingerprint,
        "client": client[0] if client else None,
        "tokens": record.usage,
        "error": record.error_kind,
    }
    access_log.info(
        "%s %s %s %.1fms model=%s key=%s",
        scope["method"],
        path,
        status or 499,
        duration_ms,
        model or "-",
        record.key_fingerprint or "-",
        extra={"fields": fields},
    )
