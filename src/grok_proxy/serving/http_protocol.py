"""uvicorn's httptools protocol with limits: head size, head and body deadlines, connections.

uvicorn's own protocol buffers a request's URL and headers without any limit (httptools
joins the pieces of one header with `+=`, so the cost grows quadratically) and waits for
them, and for a body, forever. This subclass counts the bytes of each request head before
the parser sees them and refuses the request as soon as MAX_HEADER_BYTES is crossed, closes
connections whose head or body arrives too slowly, and turns away connections beyond
MAX_CONNECTIONS. The CLI runs uvicorn with it (`http=PROTOCOL`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from grok_proxy.calls.errors import Flavor, error_envelope
from grok_proxy.config import get_settings

PROTOCOL = "grok_proxy.serving.http_protocol:GuardedHttpToolsProtocol"

log = logging.getLogger("grok_proxy.server")

# Descriptors kept free for the listener, log output, DNS and the like.
RESERVED_FDS = 64
# After refusing a head, what the caller still sends is read and dropped for this long, so
# that it can read the answer (closing with unread data would reset the connection), but
# no more than this much: a flood beyond it is left unread and then reset.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
# A URL that takes up all but this much of a refused head is "too long" (414), not the headers.
REQUEST_LINE_SLACK = 32


class HeldHead:
    """The transport a response is written to, holding its head until the body's first write.

    uvicorn writes a response's head as soon as the app starts the response, and its body
    with the next message: two socket writes and two packets, so the caller wakes twice
    for one answer. Held until the first body write of the same turn of the event loop,
    the head goes out with it in one write (as nginx sends them); a head whose body comes
    later (a stream waiting for upstream) goes out at the end of the turn, unchanged.
    """

    __slots__ = ("cycle", "head", "loop", "transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.transport = transport
        self.cycle = cycle
        self.loop = loop
        self.head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self.head
        if head is None:
            self.head = data
            self.loop.call_soon(self.flush)
            return
        self._release()
        self.transport.write(head + data)

    def flush(self) -> None:
        """Write a held head on its own (the body did not follow in the same turn)."""
        head = self.head
        if head is not None:
            self._release()
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def _release(self) -> None:
        self.head = None
        self.cycle.transport = self.transport  # later writes go straight through

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one worker enforces, from the settings and the open-files limit."""

    max_head_bytes: int
    headers_timeout: float
    body_timeout: float
    body_min_rate: int
    max_connections: int


def connection_cap(max_connections: int, open_files: int) -> int:
    """MAX_CONNECTIONS, lowered so that callers and their upstream connections fit the limit."""
    if open_files == resource.RLIM_INFINITY:
        return max_connections
    # Each caller may hold one upstream connection as well: two descriptors per caller.
    return max(1, min(max_connections, (open_files - RESERVED_FDS) // 2))


@cache
def limits() -> Limits:
    """This worker's limits, read once."""
    settings = get_settings()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap(settings.limits.max_connections, soft)
    if cap < settings.limits.max_connections:
        log.warning(
            "accepting at most %s connections per worker, not MAX_CONNECTIONS=%s: the "
            "open-files limit is %s",
            cap,
            settings.limits.max_connections,
            soft,
        )
    return Limits(
        max_head_bytes=settings.limits.max_header_bytes,
        headers_timeout=settings.limits.headers_timeout,
        body_timeout=settings.limits.body_timeout,
        body_min_rate=settings.limits.body_min_rate,
        max_connections=cap,
    )


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit from %s to %s: %s", soft, hard, exc)
        return soft, soft
    log.info("open-files limit raised from %s to %s", soft, hard)
    return soft, hard


class Refusals:
    """Logs each kind of refusal at once, then at most every `every` seconds with a count."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last: dict[str, float] = {}
        self.unlogged: dict[str, int] = {}

    def note(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) < self.every:
            self.unlogged[kind] = self.unlogged.get(kind, 0) + 1
            return
        self.last[kind] = now
        more = self.unlogged.pop(kind, 0)
        suffix = f" ({more} more since the last such line)" if more else ""
        log.warning(message + "%s", *args, suffix)


REFUSALS = Refusals()


class Phase(Enum):
    HEAD = "head"
    BODY = "body"


def error_response(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 answer in the OpenAI error envelope that closes the connection."""
    body = orjson.dumps(error_envelope(Flavor.OPENAI, status, message, code=code))
    head = (
        STATUS_LINE[status]
        + b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that bounds each request head's size and time, and the body's time."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits()
        self.phase = Phase.HEAD
        self.head_bytes = 0
        # When the head being received began (None: no request under way).
        self.head_since: float | None = None
        self.body_since = 0.0
        self.body_last = 0.0
        self.body_bytes = 0
        self.watchdog: asyncio.TimerHandle | None = None
        self.refused = False
        self.dropped = 0

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.refused = True
            self.transport = transport
            REFUSALS.note(
                "connections",
                "connection refused with 503: %s connections open, the most allowed "
                "(MAX_CONNECTIONS, open-files limit)",
                len(self.connections),
            )
            transport.write(
                error_response(
                    503,
                    "grok-proxy has too many open connections; retry shortly.",
                    "too_many_connections",
                )
            )
            transport.close()
            return
        super().connection_made(transport)
        self.head_since = self.loop.time()
        self._watch_in(self.limits.headers_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if self.refused and self.flow is None:
            # Turned away in connection_made: uvicorn's bookkeeping never saw it.
            self.parser = None
            return
        super().connection_lost(exc)

    # Bytes in

    def data_received(self, data: bytes) -> None:
        if self.refused:
            # Lingering after a refusal: read and drop, up to a point.
            self.dropped += len(data)
            if self.dropped > LINGER_BYTES:
                self.transport.pause_reading()
            return
        while data:
            if self.phase is Phase.BODY:
                self._body_arrived(len(data))
                if self.refused:
                    return
                super().data_received(data)
                break
            room = self.limits.max_head_bytes - self.head_bytes
            if len(data) <= room:
                self.head_bytes += len(data)
                super().data_received(data)
                break
            # Feed no more than the limit allows: the head must end within it.
            part, data = data[:room], data[room:]
            self.head_bytes += len(part)
            super().data_received(part)
            if self._handed_over():
                return
            if self.phase is Phase.HEAD:
                self._refuse_head()
                return
        # (On a closed or upgraded connection, a deadline check finds nothing to do.)
        if self.phase is Phase.BODY:
            self._watch_in(self.limits.body_timeout)
        elif self.head_since is not None:
            self._watch_in(self.limits.headers_timeout)

    def _handed_over(self) -> bool:
        """The connection is closing, or upgraded to another protocol (a WebSocket)."""
        return self.transport.is_closing() or self.transport.get_protocol() is not self

    def _body_arrived(self, size: int) -> None:
        now = self.loop.time()
        self.body_last = now
        self.body_bytes += size
        elapsed = now - self.body_since
        rate = self.limits.body_min_rate
        if rate and elapsed > self.limits.body_timeout and self.body_bytes < rate * elapsed:
            self._time_out(
                "body",
                f"The request body arrived slower than {rate} bytes per second "
                "(setting BODY_MIN_RATE).",
            )

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_since is None:
            self.head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not cycle.response_started and cycle.transport is self.transport:
            cycle.transport = HeldHead(self.transport, cycle, self.loop)  # type: ignore[assignment]
        self.phase = Phase.BODY
        self.head_since = None
        self.body_since = self.body_last = self.loop.time()
        self.body_bytes = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = Phase.HEAD
        self.head_bytes = 0

    # Refusals

    def _refuse_head(self) -> None:
        limit = self.limits.max_head_bytes
        # uvicorn gathers the URL's pieces in self.url as the parser reports them.
        if len(getattr(self, "url", b"")) + REQUEST_LINE_SLACK >= self.head_bytes:
            status, code, what = 414, "request_uri_too_long", "URL"
        else:
            status, code, what = 431, "request_headers_too_large", "headers"
        REFUSALS.note(
            "head",
            "request refused with %s: its %s passed MAX_HEADER_BYTES=%s",
            status,
            what,
            limit,
        )
        message = (
            f"Request {what} exceed the limit of {limit} bytes for the request line and "
            "headers (setting MAX_HEADER_BYTES)."
            if what == "headers"
            else f"Request URL exceeds the limit of {limit} bytes for the request line and "
            "headers (setting MAX_HEADER_BYTES)."
        )
        self._refuse(error_response(status, message, code), linger=True)

    def _time_out(self, what: str, message: str) -> None:
        REFUSALS.note("slow-" + what, "connection closed with 408: %s", message)
        self._refuse(error_response(408, message, "request_timeout"), linger=False)

    def _refuse(self, answer: bytes, *, linger: bool) -> None:
        """Answer (unless a response is under way), stop parsing, and close."""
        self.refused = True
        cycle = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if busy and cycle.response_started:
            answer = b""  # the caller is getting an answer already: only close
        if busy:
            # The application sees a disconnect and its own answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(answer)
        if linger and answer and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    # Deadlines

    def _watch_in(self, delay: float) -> None:
        """Check the deadlines in `delay` seconds at the latest (an earlier check may stand)."""
        due = self.loop.time() + delay
        if self.watchdog is not None:
            if self.watchdog.when() <= due:
                return
            self.watchdog.cancel()
        self.watchdog = self.loop.call_at(due, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self.watchdog = None
        if self.refused or self._handed_over():
            return
        now = self.loop.time()
        if self.phase is Phase.BODY:
            if self.flow.read_paused:
                # The application is not reading yet: the wait is the proxy's, not the caller's.
                self.body_last = now
            remaining = self.body_last + self.limits.body_timeout - now
            if remaining <= 0:
                self._time_out(
                    "body",
                    f"No part of the request body arrived for {self.limits.body_timeout:g} "
                    "seconds (setting BODY_TIMEOUT).",
                )
                return
            self._watch_in(remaining)
        elif self.head_since is not None:
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined request waits for the one before it: not the caller's delay.
                self.head_since = now
            remaining = self.head_since + self.limits.headers_timeout - now
            if remaining <= 0 and self.head_bytes == 0:
                # Connected, or kept alive, and sent nothing: close without a word.
                self.refused = True
                self.transport.close()
                return
            if remaining <= 0:
                self._time_out(
                    "head",
                    "The request line and headers did not arrive within "
                    f"{self.limits.headers_timeout:g} seconds (setting HEADERS_TIMEOUT).",
                )
                return
            self._watch_in(remaining)
