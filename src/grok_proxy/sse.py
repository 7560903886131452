"""Relaying a server-sent event stream honestly: whole events, as they arrive, never faked.

Upstream bytes are passed on untouched, cut only at event boundaries (a blank line), so
that an error event can always be appended cleanly. A stream that is cut, stalls, or ends
without its route's terminal event gets an error event and no terminator: a truncated
answer must never look complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from grok_proxy import metrics
from grok_proxy.errors import Flavor, ProxyError, UpstreamUnreachable
from grok_proxy.lifecycle import Drain
from grok_proxy.record import RequestRecord
from grok_proxy.transport import UpstreamResponse
from grok_proxy.usage import USAGE_MARK, event_payload, from_event, is_usage_only_chunk, merge

log = logging.getLogger("grok_proxy.sse")


KEEPALIVE = b": keep-alive\n\n"


def last_event_end(data: bytes) -> int:
    """Index just past the last complete event in `data` (0 when there is none)."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def error_event(flavor: Flavor, error: ProxyError) -> bytes:
    """An SSE event that makes the caller's SDK raise `error`."""
    envelope = orjson.dumps(error.envelope(flavor))
    if flavor is Flavor.ANTHROPIC:
        return b"event: error\ndata: " + envelope + b"\n\n"
    return b"data: " + envelope + b"\n\n"


class HangUpWatch:
    """Cancels the current task if the caller hangs up while the block runs.

    A watcher task listens for `http.disconnect` (uvicorn's send() stays quiet after a
    hang-up, so nothing else would notice). Creating and cancelling that task costs ~70 µs,
    a sixth of a fast request, so it starts only once the block has run for `after`
    seconds: answers faster than that never pay for it, and a slow call (every real model
    call) is still closed within `after` of the hang-up. The request body must already have
    been read. After the block, `gone` says whether the caller left; the cancellation it
    caused has been withdrawn, so cleanup can still await.
    """

    def __init__(self, receive: Receive, after: float = 0.05) -> None:
        self.receive = receive
        self.after = after
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    def __enter__(self) -> HangUpWatch:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.timer = asyncio.get_running_loop().call_later(self.after, self._start)
        return self

    def _start(self) -> None:
        self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.task.cancel()

    def __exit__(self, *exc_info: object) -> None:
        self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()
        if self.gone:
            self.task.uncancel()


class KeepAliveClock:
    """Interrupts the relay's wait for upstream once it has lasted `every` seconds.

    One timer per stream that re-arms itself, instead of a timeout per chunk: a stream
    waits once per chunk, and creating and cancelling a timer each time cost more than
    relaying the chunk (docs/benchmarks.md). The interruption is a cancellation of the
    relay's task, taken back by the relay exactly as `asyncio.timeout` does it, so a
    hang-up or shutdown arriving at the same moment still gets through.
    """

    def __init__(self, task: asyncio.Task[None], every: float) -> None:
        self.task = task
        self.every = every
        self.loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None
        self.rang = False
        self.cancelling = 0
        self.timer = self.loop.call_later(every, self._tick)

    def _tick(self) -> None:
        since = self.waiting_since
        waited = 0.0 if since is None else self.loop.time() - since
        if since is not None and waited >= self.every and not self.rang:
            self.rang = True
            self.cancelling = self.task.cancelling()
            self.task.cancel()
            waited = 0.0
        self.timer = self.loop.call_later(max(self.every - waited, 0.001), self._tick)

    def answered(self) -> bool:
        """After a CancelledError: whether it was only this clock (and is now withdrawn)."""
        if not self.rang:
            return False
        self.rang = False
        return self.task.uncancel() <= self.cancelling

    def stop(self) -> None:
        self.timer.cancel()


class SseRelay(Response):
    """ASGI response that relays an open upstream SSE response and closes it on every path."""

    def __init__(
        self,
        upstream: UpstreamResponse,
        *,
        headers: list[tuple[bytes, bytes]],
        flavor: Flavor,
        done_markers: tuple[bytes, ...],
        describe_failure: Callable[[httpx.TransportError], ProxyError],
        keepalive: float = 0,
        drain: Drain | None = None,
        record: RequestRecord | None = None,
        strip_usage: bool = False,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.upstream = upstream
        self.status_code = upstream.status
        self.raw_headers = headers
        self.flavor = flavor
        self.done_markers = done_markers
        self.describe_failure = describe_failure
        self.keepalive = keepalive
        self.drain = drain
        self.record = record or RequestRecord(request_id="-")
        self.record.streamed = True
        self.strip_usage = strip_usage
        # Rewrites whole events (model names back to the caller's form, for some presets).
        self.rewrite = rewrite
        self.ended: str | None = None
        self.background = None
        self.clock: KeepAliveClock | None = None  # started with the stream, in __call__

    def end(self, reason: str) -> None:
        """End the stream now with an error event saying `reason` (used at shutdown)."""
        self.ended = reason
        self.task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's StreamingResponse only watches for a disconnect on ASGI 2.3 servers,
        # and uvicorn's send() stays quiet after one: watch for it here, on every server.
        watch = HangUpWatch(receive)
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        if self.drain is not None:
            self.drain.streams.add(self)
        metrics.OPEN_STREAMS.inc()
        self.clock = KeepAliveClock(task, self.keepalive) if self.keepalive else None
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
            metrics.OPEN_STREAMS.dec()
            if self.drain is not None:
                self.drain.streams.discard(self)
            await self.upstream.aclose()

    async def _next_chunk(self, send: Send) -> bytes:
        """The next upstream bytes; during long silences, keep-alive comments to the caller.

        Load balancers cut connections idle for 60-180 s while reasoning models think for
        minutes. The comment goes out only between whole events (partial ones are held
        back), and SSE clients ignore comment lines.
        """
        clock = self.clock
        if clock is None:
            return await self.upstream.read_chunk()
        while True:
            clock.waiting_since = clock.loop.time()
            try:
                return await self.upstream.read_chunk()
            except asyncio.CancelledError:
                if not clock.answered():
                    raise
            finally:
                clock.waiting_since = None
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    def _ends(self, events: bytes) -> bool:
        return any(marker in events for marker in self.done_markers)

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        pending = b""
        completed = not self.done_markers
        failure: ProxyError | None = None
        try:
            while chunk := await self._next_chunk(send):
                data = pending + chunk if pending else chunk
                end = last_event_end(data)
                if end == 0:
                    pending = data
                    continue
                events, pending = data[:end], data[end:]
                completed = completed or self._ends(events)
                if USAGE_MARK in events:
                    events = self._take_usage(events)
                if self.rewrite is not None:
                    events = self.rewrite(events)
                await send({"type": "http.response.body", "body": events, "more_body": True})
        except httpx.TransportError as exc:
            failure = self.describe_failure(exc)
            if isinstance(exc, httpx.TimeoutException):
                self.record.error_kind = "stream_stalled"
                failure.message = f"Stream interrupted: {failure.message}"
            else:
                self.record.error_kind = "stream_cut"
                failure = UpstreamUnreachable(
                    "Stream interrupted: the upstream connection was lost mid-answer."
                )
        if failure is None and pending:
            # Upstream ended inside an event; pass it on as sent, it is upstream's word.
            completed = completed or self._ends(pending)
            if self.rewrite is not None:
                pending = self.rewrite(pending)
            await send({"type": "http.response.body", "body": pending, "more_body": True})
        if failure is None and not completed:
            self.record.error_kind = "stream_incomplete"
            failure = UpstreamUnreachable(
                "Stream interrupted: the upstream ended the stream before it was complete."
            )
        if failure is not None:
            log.warning("upstream stream failed: %s", failure.message)
        await self._finish(send, failure)

    def _take_usage(self, events: bytes) -> bytes:
        """Note the usage these events report; drop the usage chunk the proxy asked for."""
        kept = []
        for event in events.split(b"\n\n")[:-1]:
            payload = event_payload(event) if USAGE_MARK in event else None
            found = from_event(payload)
            if found is not None:
                self.record.usage = merge(self.record.usage, found)
                if self.strip_usage and is_usage_only_chunk(payload):
                    continue
            kept.append(event + b"\n\n")
        return b"".join(kept)

    async def _finish(self, send: Send, failure: ProxyError | None) -> None:
        """End the response, with an error event first when the stream is incomplete."""
        if failure is not None:
            event = error_event(self.flavor, failure)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
