"""Relaying an upstream answer that is not read whole: SSE streams and large plain bodies.

An SSE stream goes out event by event as the parser completes them, each event's bytes
exactly as upstream sent them. Filters look at parsed events only (usage, model names)
and never touch the bytes of other events. A stream that is cut, stalls, or ends without
its route's terminal event gets an error event and no terminator: a truncated answer never
looks complete. A plain body that is cut short cannot change its status any more, so the
caller's connection is closed without a clean end, which every HTTP client reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableSet
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from grok_proxy.calls.asgi import Receive, Scope, Send
from grok_proxy.calls.errors import Flavor, ProxyError, UpstreamUnreachable
from grok_proxy.calls.record import RequestRecord
from grok_proxy.calls.route import Route
from grok_proxy.calls.sse import RELAY_PIECE_BYTES, Event, EventTooLarge, SseParser, pieces
from grok_proxy.calls.transport import ReadTimedOut, UpstreamFailure, UpstreamResponse
from grok_proxy.calls.usage import USAGE_MARK, from_event, is_usage_only_chunk, merge
from grok_proxy.calls.watch import HangUpWatch, StreamClock

log = logging.getLogger("grok_proxy.relay")

KEEPALIVE = b": keep-alive\n\n"


def error_event(flavor: Flavor, error: ProxyError) -> bytes:
    """An SSE event that makes the caller's SDK raise `error`."""
    envelope = orjson.dumps(error.envelope(flavor))
    if flavor is Flavor.ANTHROPIC:
        return b"event: error\ndata: " + envelope + b"\n\n"
    return b"data: " + envelope + b"\n\n"


class Endable(Protocol):
    """A stream the worker's shutdown can end (serving.lifecycle.Drain holds them)."""

    def end(self, reason: str) -> None:
        """Stop relaying and tell the caller why."""


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class StreamHooks:
    """What is told as a stream opens and ends (the open-streams gauge, when metrics are on)."""

    opened: Callable[[], None] = _nothing
    ended: Callable[[], None] = _nothing


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What every relay of one worker shares."""

    keepalive: float
    # Longest upstream silence while the relay waits (XAI_READ_TIMEOUT).
    read_timeout: float
    max_event: int
    # The streams open now, which the worker's shutdown ends (its Drain's, handed in).
    streams: MutableSet[Endable]
    # Model names back to the caller's form (some presets), on whole events or bodies.
    rewrite: Callable[[bytes], bytes] | None
    describe: Callable[[UpstreamFailure], ProxyError]
    # Told as each stream opens and ends: the composition root plugs the open-streams
    # gauge in here, so the call path imports no metrics.
    stream_hooks: StreamHooks = field(default_factory=StreamHooks)


class SseRelay:
    """An answer (reply.Answer) relaying an open upstream SSE stream; closed on every path."""

    def __init__(
        self,
        answer: UpstreamResponse,
        headers: list[tuple[bytes, bytes]],
        route: Route,
        config: RelayConfig,
        record: RequestRecord,
        *,
        strip_usage: bool = False,
    ) -> None:
        self.answer = answer
        self.status_code = answer.status
        self.raw_headers = headers
        self.route = route
        self.config = config
        self.record = record
        record.streamed = True
        self.strip_usage = strip_usage
        self.ended: str | None = None
        self.clock: StreamClock | None = None  # started with the stream, in __call__

    def end(self, reason: str) -> None:
        """End the stream now with an error event saying `reason` (used at shutdown)."""
        self.ended = reason
        self.task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The stream is relayed by a task of its own. Every event wakes the task that waits
        # for upstream bytes, and waking it resumes each frame between the task and that
        # wait: in the request's task those are the ~25 frames of the ASGI middleware chain
        # (about a fifth of a relayed event's CPU), in its own task a handful. A cancellation
        # of the request's task reaches this one through the await.
        await asyncio.get_running_loop().create_task(self._relay(receive, send))

    async def _relay(self, receive: Receive, send: Send) -> None:
        # Starlette's StreamingResponse only watches for a disconnect on ASGI 2.3 servers,
        # and uvicorn's send() stays quiet after one: watch for it here, on every server.
        watch = HangUpWatch(receive)
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        streams = self.config.streams
        streams.add(self)
        hooks = self.config.stream_hooks
        hooks.opened()
        # The clock times the stream's reads, keep-alives and silence alike.
        self.answer.untimed()
        self.clock = StreamClock(task, self.config.keepalive, self.config.read_timeout)
        try:
            with watch:
                await self._pump(send)
        except asyncio.CancelledError:
            if watch.gone:
                log.info("caller hung up mid-stream; upstream stream closed")
            elif self.ended is not None:
                task.uncancel()
                self.record.error_kind = "shutdown"
                await self._finish(
                    send, UpstreamUnreachable(self.ended, code="proxy_shutting_down")
                )
            else:
                raise
        finally:
            if self.clock is not None:
                self.clock.stop()
            hooks.ended()
            streams.discard(self)
            await self.answer.aclose()

    async def _next_chunk(self, send: Send) -> bytes:
        """The next upstream bytes; during long silences, keep-alive comments to the caller.

        Load balancers cut connections idle for 60-180 s while reasoning models think for
        minutes. The comment goes out only between whole events (partial ones are held
        back), and SSE clients ignore comment lines. Silence past the read timeout is a
        failure (ReadTimedOut), as it is for every other read.
        """
        clock = self.clock
        assert clock is not None
        fresh = True  # upstream bytes came before this wait (or it is the first)
        while True:
            clock.waiting(fresh)
            try:
                chunk = await self.answer.read_chunk()
            except asyncio.CancelledError:
                why = clock.answered()
                if why is None:
                    raise
                if why == "silence":
                    raise ReadTimedOut("no upstream bytes within the read timeout") from None
            else:
                clock.heard()
                return chunk
            fresh = False
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        end = self.route.stream_end
        parser = SseParser(self.config.max_event, marks=(USAGE_MARK, *end.marks))
        completed = not end.known
        # Without a rewrite, a read of whole events that can be neither the end nor usage
        # goes out as it came, uncut: most reads of a stream are such.
        as_read = self.config.rewrite is None
        record = self.record
        failure: ProxyError | None = None
        try:
            while True:
                chunk = await self._next_chunk(send)
                if (
                    as_read
                    and (count := parser.whole(chunk))
                    and USAGE_MARK not in chunk
                    and not end.mentioned(chunk)
                ):
                    record.relayed_events += count
                    await _send_body(send, chunk)
                    continue
                events = parser.feed(chunk) if chunk else parser.close()
                record.relayed_events += len(events)
                out: list[bytes | bytearray] = []
                for event in events:
                    completed = completed or end.reached(event)
                    raw = self._filter(event)
                    if raw:
                        out.append(raw)
                if out:
                    await _send_body(send, out[0] if len(out) == 1 else b"".join(out))
                if not chunk:
                    break
        except UpstreamFailure as exc:
            failure = self.config.describe(exc)
            failure.message = f"Stream interrupted: {failure.message}"
            self.record.error_kind = (
                "stream_stalled" if isinstance(exc, ReadTimedOut) else "stream_cut"
            )
        except EventTooLarge as exc:
            self.record.error_kind = "stream_event_too_large"
            failure = UpstreamUnreachable(
                f"Stream interrupted: an upstream event exceeded {exc.limit} bytes "
                "(setting MAX_SSE_EVENT_BYTES)."
            )
        if failure is None and not completed:
            # An event the upstream did not finish is dropped, as SSE clients drop it.
            self.record.error_kind = "stream_incomplete"
            failure = UpstreamUnreachable(
                "Stream interrupted: the upstream ended the stream before it was complete."
            )
        if failure is not None:
            log.warning("upstream stream failed: %s", failure.message)
        await self._finish(send, failure)

    def _filter(self, event: Event) -> bytes | bytearray:
        """The bytes to relay for one event: as sent, minus what the proxy itself asked for."""
        raw = event.raw
        if event.mentions(USAGE_MARK) and event.data is not None:
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                payload = None
            found = from_event(payload)
            if found is not None:
                self.record.usage = merge(self.record.usage, found)
                if self.strip_usage and is_usage_only_chunk(payload):
                    return b""
        rewrite = self.config.rewrite
        if rewrite is None:
            return raw
        return rewrite(raw if isinstance(raw, bytes) else bytes(raw))

    async def _finish(self, send: Send, failure: ProxyError | None) -> None:
        """End the response, with an error event first when the stream is incomplete."""
        if failure is not None:
            event = error_event(self.route.flavor, failure)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _send_body(send: Send, body: bytes | bytearray) -> Awaitable[None]:
    # Not a coroutine for the common, small body: the server's own send is awaited.
    if len(body) <= RELAY_PIECE_BYTES and isinstance(body, bytes):
        return send({"type": "http.response.body", "body": body, "more_body": True})
    return _send_pieces(send, body)


async def _send_pieces(send: Send, body: bytes | bytearray) -> None:
    for piece in pieces(body):  # a huge event: other callers get turns
        await send({"type": "http.response.body", "body": piece, "more_body": True})


class BodyRelay:
    """An answer (reply.Answer) that streams a plain upstream body through as it arrives.

    Memory stays flat whatever the size (file downloads): at most one chunk is held.
    """

    def __init__(
        self, answer: UpstreamResponse, headers: list[tuple[bytes, bytes]], record: RequestRecord
    ) -> None:
        self.answer = answer
        self.status_code = answer.status
        self.raw_headers = headers
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = HangUpWatch(receive)
        try:
            with watch:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                while chunk := await self.answer.read_chunk():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            log.info("caller hung up mid-body; upstream answer closed")
        except UpstreamFailure as exc:
            # The status is sent: returning without ending the body makes the server close
            # the connection, so the caller sees a cut, never a complete-looking answer.
            self.record.error_kind = "body_cut"
            log.warning("upstream body cut short: %s", exc.message)
        finally:
            await self.answer.aclose()
