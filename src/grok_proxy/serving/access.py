"""What the serving layer writes about each request: its id, Server-Timing and access line."""

from __future__ import annotations

import itertools
import logging
import re
import secrets

from starlette.types import Scope

from grok_proxy.calls.record import GRPC, WEBSOCKET, RequestRecord
from grok_proxy.serving.observers import Finished
from grok_proxy.serving.paths import API_PREFIX

__all__ = [
    "API_PREFIX",
    "CALLER_PATH",
    "AccessLog",
    "access_line",
    "request_id_for",
    "server_timing",
]

# The path as the caller sent it, kept in the scope where /v1 became /api/v1 (access lines).
CALLER_PATH = "grok_proxy.caller_path"

access_log = logging.getLogger("grok_proxy.access")
# Longest model name written to an access line (longer ones are cut, with an ellipsis).
MAX_LOGGED_MODEL = 200

# A caller's X-Request-ID is kept when it is a plausible id, replaced otherwise (it ends
# up in log lines and upstream headers, so nothing that could forge either gets through).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def request_id_for(presented: str | None) -> str:
    """The caller's request id when it is a plausible one, else a new one (HTTP and gRPC)."""
    if presented is not None and VALID_REQUEST_ID.fullmatch(presented):
        return presented
    # Unique per process by a random prefix and a counter: a tenth of uuid4's cost.
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def presented_request_id(scope: Scope) -> str | None:
    """The X-Request-ID the caller sent, if any."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            return text
    return None


def server_timing(started: float, first_byte: float, record: RequestRecord) -> bytes:
    """The proxy's own time, and the upstream's, in the W3C Server-Timing format."""
    total_ms = (first_byte - started) * 1000
    if record.upstream_seconds is None:
        return f"proxy;dur={total_ms:.2f}".encode()
    upstream_ms = record.upstream_seconds * 1000
    return (
        f"proxy;dur={max(0.0, total_ms - upstream_ms):.2f}, upstream;dur={upstream_ms:.2f}".encode()
    )


class AccessLog:
    """The observer (observers.Observer) that writes one access line per call, any protocol."""

    def started(self, scope: Scope, record: RequestRecord) -> None:
        return None

    def finished(self, request: Finished) -> None:
        if access_log.isEnabledFor(logging.INFO):
            protocol = request.record.protocol
            if protocol == WEBSOCKET:
                _write_session(request)
            elif protocol == GRPC:
                _write_grpc_call(request)
            else:
                _write(request)


def _write(request: Finished) -> None:
    record, started, first_byte = request.record, request.started, request.first_byte
    client = request.scope.get("client")
    access_line(
        request.scope["method"],
        request.path,
        request.status,
        (request.ended - started) * 1000,
        model=record.model,
        key=record.key_fingerprint,
        client=client[0] if client else None,
        first_byte_ms=round((first_byte - started) * 1000, 2) if first_byte else None,
        upstream_ms=round(record.upstream_seconds * 1000, 2) if record.upstream_seconds else None,
        attempts=record.attempts or None,
        tokens=record.usage,
        error=record.error_kind,
    )


def _write_session(request: Finished) -> None:
    record = request.record
    client = request.scope.get("client")
    close = record.close_code if record.close_code is not None else "-"
    up, down = record.messages_in, record.messages_out
    access_line(
        "WEBSOCKET",
        request.path,
        request.status,
        (request.ended - request.started) * 1000,
        model=record.model,
        key=record.key_fingerprint,
        client=client[0] if client else None,
        summary=(
            f" up={up}/{record.bytes_in}B down={down}/{record.bytes_out}B"
            f" close={close} by {record.closed_by or '-'}"
        ),
        messages_up=up,
        messages_down=down,
        bytes_up=record.bytes_in,
        bytes_down=record.bytes_out,
        close_code=record.close_code,
        closed_by=record.closed_by,
    )


def _write_grpc_call(request: Finished) -> None:
    record = request.record
    access_line(
        "gRPC",
        request.path,
        request.status,
        (request.ended - request.started) * 1000,
        model=record.model,
        key=record.key_fingerprint,
        client=request.scope["client"][0],
        summary=f" in={record.messages_in} out={record.messages_out}",
        protocol="grpc",
        messages_in=record.messages_in,
        messages_out=record.messages_out,
    )


def access_line(
    method: str,
    path: str,
    status: int | str,
    duration_ms: float,
    *,
    model: str | None,
    key: str | None,
    client: str | None,
    summary: str = "",
    **fields: object,
) -> None:
    """The one access line of a call, whichever protocol: HTTP, WebSocket or gRPC.

    `summary` ends the text line (counts that say how a session went); `fields` go only
    into the structured record (LOG_FORMAT=json).
    """
    # A model name comes from the caller's body: a megabyte of it would make a megabyte line.
    if model and len(model) > MAX_LOGGED_MODEL:
        model = model[:MAX_LOGGED_MODEL] + "…"
    record = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 2),
        "model": model,
        "key": key,
        "client": client,
        **fields,
    }
    access_log.info(
        "%s %s %s %.1fms model=%s key=%s%s",
        method,
        path,
        status,
        duration_ms,
        model or "-",
        key or "-",
        summary,
        extra={"fields": record},
    )
