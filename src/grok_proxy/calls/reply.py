"""What the call path hands back to the HTTP adapter: an answer that sends itself over ASGI.

The forwarding core imports no web framework: a whole answer is a `Reply`, a relayed one
an `SseRelay` or `BodyRelay` (relay.py). Each is an ASGI callable with a status, so the
serving layer (entry.py) and FastAPI's routes alike can send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from grok_proxy.calls.asgi import Receive, Scope, Send

JSON_TYPE = (b"content-type", b"application/json")
# Statuses whose answers have no body, and so no Content-Length (RFC 9110 8.6).
BODILESS = frozenset({204, 304})


class Answer(Protocol):
    """An answer for the caller, sent by calling it."""

    status_code: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class Reply:
    """A complete answer: status, headers and the whole body."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(
        self,
        body: bytes,
        status: int,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        json: bool = False,
    ) -> None:
        self.body = body
        self.status_code = status
        self.raw_headers = headers if headers is not None else []
        if json:
            self.raw_headers.insert(0, JSON_TYPE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = self.raw_headers
        if self.status_code >= 200 and self.status_code not in BODILESS:
            headers = [*headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete JSON answer, straight over ASGI (for answers made before any route)."""
    extra = (
        [(name.encode(), value.encode()) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    raw = [JSON_TYPE, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def deny_upgrade(
    scope: Scope, send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Refuse a WebSocket upgrade with an HTTP status and a JSON body.

    Over ASGI's `websocket.http.response` extension; a server without it can only refuse
    with a bare 403.
    """
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    raw = [JSON_TYPE, *headers]
    await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
    await send({"type": "websocket.http.response.body", "body": body})
