"""The proxy's ASGI application: the steps every request shares, in one frame, then its row.

uvicorn calls `Entry` for every request, its head already measured against
MAX_HEADER_BYTES in bytes as they arrived (server_protocol.py, the one measure of it). An
HTTP request is given its id and record, its path normalised (dot-segments, paths.py) and
aliased (`/v1` is served as `/api/v1`), checked for the operational token (ops_auth.py),
and matched against the route table: a row runs at once, through the policy in front of
the rows when the proxy is shared (the team gate); anything else (health, metrics, docs,
admin, the console) goes to the FastAPI app. Errors become one envelope in the row's
flavour, decided here once; every request ends with the observers (metrics, access line,
traces) told the status the caller got. A WebSocket upgrade goes to the relay, the
lifespan to the FastAPI app.

Starlette's middleware stack would put ~25 frames between the server and the upstream
send, each resumed on every wake-up of the request's task; this puts a handful.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grok_proxy.calls.errors import (
    FLAVOR,
    Flavor,
    InvalidRequest,
    ProxyError,
    envelope_bytes,
    error_envelope,
    send_error,
)
from grok_proxy.calls.record import RequestRecord
from grok_proxy.calls.reply import deny_upgrade, send_json
from grok_proxy.observability.logs import request_id
from grok_proxy.routes.table import API_PREFIX, RouteTable, Row
from grok_proxy.serving.access import (
    CALLER_PATH,
    presented_request_id,
    request_id_for,
    server_timing,
)
from grok_proxy.serving.observers import Finished, Observer
from grok_proxy.serving.ops_auth import OpsGuard
from grok_proxy.serving.paths import UnsafePath, remove_dot_segments

log = logging.getLogger("grok_proxy")

# Scope key: the row that matched the request (None: the FastAPI app serves it).
ROW = "grok_proxy.row"


class Entry:
    """The ASGI application uvicorn runs: serving steps, then a row or the FastAPI app."""

    def __init__(
        self,
        app: FastAPI,
        table: RouteTable,
        *,
        websockets: ASGIApp,
        ops: OpsGuard,
        observers: tuple[Observer, ...] = (),
        policy: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        # Metrics, logs, traces: told when each HTTP request starts and ends.
        self.observers = observers
        self.table = table
        self.websockets = websockets
        self.ops = ops
        # The rows run through the policy in front of them (teams), if there is one.
        self.routed: ASGIApp = self.dispatch if policy is None else policy(self.dispatch)
        # The outermost ASGI callable below the access log (CORS wraps the rest when on).
        self.serve: ASGIApp = self.route
        # Paths below the prefix that FastAPI serves (health) are never forwarded.
        rows = {row.template for row in table.rows}
        for route in app.router.routes:
            path = getattr(route, "path", "")
            if path.startswith(API_PREFIX + "/") and "{" not in path and path not in rows:
                table.reserved.add(path)

    @property
    def state(self) -> Any:
        """The FastAPI app's state (the forwarder lives there once the lifespan ran)."""
        return self.app.state

    @property
    def router(self) -> Any:
        """The FastAPI app's router (its lifespan, for servers and tests that run one)."""
        return self.app.router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)  # the lifespan

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        caller_path: str = scope["path"]
        rid = request_id_for(presented_request_id(scope))
        record = RequestRecord(request_id=rid)
        scope.setdefault("state", {})["record"] = record
        token = request_id.set(rid)
        status = 0
        first_byte: float | None = None

        # Not a coroutine: it hands back the server's own `send(...)` for the caller to
        # await, so a stream's events cross no extra frame on their way out.
        def send_with_headers(message: Message) -> Awaitable[None]:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte = perf_counter()
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"server-timing", server_timing(started, first_byte, record)))
                message = {**message, "headers": headers}
            if listeners:
                for listen in listeners:
                    listen(message)
            return send(message)

        observers = self.observers
        listeners = [
            listen for observer in observers if (listen := observer.started(scope, record))
        ]
        try:
            await self.serve(scope, receive, send_with_headers)
        except Exception as exc:
            if status == 0:
                log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
                flavor = scope.get(FLAVOR, Flavor.OPENAI)
                body = error_envelope(flavor, 500, "Internal error in grok-proxy.")
                await send_json(send_with_headers, 500, orjson.dumps(body))
            elif status != 500:  # FastAPI's handler has logged the ones it answered
                log.error("unexpected error after the answer started", exc_info=exc)
        finally:
            done = Finished(
                scope, caller_path, record, status or 499, started, first_byte, perf_counter()
            )
            for observer in observers:
                observer.finished(done)
            request_id.reset(token)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Normalise the path, check operational tokens, then run the row (or the app)."""
        if not _normalised(scope):
            await send_error(
                send,
                400,
                f"{scope[UNSAFE]} Send the path without `.` or `..` segments.",
                code="invalid_path",
            )
            return
        if self.ops.guarded and not self.ops.admits(scope):
            await self.ops.refuse(send)
            return
        path: str = scope["path"]
        if path.startswith("/v1/"):
            _alias(scope)
            path = scope["path"]
        row = self.table.match(scope["method"], path) if path.startswith(API_PREFIX) else None
        scope[ROW] = row
        scope[FLAVOR] = self.table.flavor(path, row)
        if row is not None:
            scope["state"]["record"].route = row.template
        try:
            await self.routed(scope, receive, send)
        except ProxyError as exc:
            await send_json(send, exc.status, envelope_bytes(scope[FLAVOR], exc), exc.headers)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A row's handler and its answer; the FastAPI app for everything else."""
        row: Row | None = scope[ROW]
        if row is None:
            await self.app(scope, receive, send)
            return
        answer = await row.handler(Request(scope, receive), row, self.app.state.forwarder)
        await answer(scope, receive, send)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _normalised(scope):
            error = InvalidRequest(
                f"{scope[UNSAFE]} Send the path without `.` or `..` segments.", code="invalid_path"
            )
            await deny_upgrade(scope, send, 400, envelope_bytes(Flavor.OPENAI, error))
            return
        if scope["path"].startswith("/v1/"):
            _alias(scope)
        # The relay finds the worker's Drain through the app, as Starlette's apps set it.
        scope["app"] = self.app
        await self.websockets(scope, receive, send)


# Scope key: why a path was refused (set by _normalised).
UNSAFE = "grok_proxy.unsafe_path"


def _normalised(scope: Scope) -> bool:
    """Resolve dot-segments in place; False (and the reason in the scope) for unsafe paths."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    if b"." in raw or b"%" in raw or b"\\" in raw:
        text = raw.decode("latin-1")
        try:
            normal = remove_dot_segments(text)
        except UnsafePath as exc:
            scope[UNSAFE] = str(exc)
            return False
        if normal != text:
            scope["raw_path"] = normal.encode("latin-1")
            scope["path"] = unquote(normal)  # decoded as uvicorn does
    return True


def _alias(scope: Scope) -> None:
    """Serve `/v1/...` as `/api/v1/...`: one set of routes, the caller's path kept for logs."""
    scope[CALLER_PATH] = scope["path"]
    scope["path"] = "/api" + scope["path"]
    raw_path = scope.get("raw_path")
    if raw_path is not None:
        scope["raw_path"] = b"/api" + raw_path
