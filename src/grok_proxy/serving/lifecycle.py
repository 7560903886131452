"""Graceful shutdown: on SIGTERM, finish what is in flight, then end streams honestly.

uvicorn stops accepting connections and waits `SHUTDOWN_GRACE_SECONDS` for requests to
finish, then cancels what is left, which would cut streams with no word of why. Shortly
before that, grok-proxy ends each remaining stream itself with an SSE error event, so
the caller knows the answer is incomplete. While draining, /health answers 503 so load
balancers stop sending traffic.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from grok_proxy.calls.relay import Endable
from grok_proxy.observability import logs

log = logging.getLogger("grok_proxy.lifecycle")

# Streams are ended this long before uvicorn would cancel them, so the error event is sent,
MARGIN_SECONDS = 0.5
# plus this long per stream open when the drain begins: thousands of sessions take a while
# to close, and every caller must have its 1001 (or error event) before the cancel.
MARGIN_PER_STREAM = 0.001
# At most this share of the grace goes to the margin: streams keep most of their time.
MAX_MARGIN_SHARE = 0.5
# Streams ended per turn of the event loop: ending 2,000 WebSocket sessions in one turn
# held the loop 112-365 ms (every other caller waited that long); batches that yield
# between them let other work run in between.
END_BATCH = 100
REASON = "grok-proxy is shutting down; the stream was ended before it was complete."


class Drain:
    """The worker's one shutdown fan-out: tells every listener, ends streams left at the end.

    Installed once per worker on SIGTERM/SIGINT; each protocol that needs to hear of the
    shutdown (the gRPC listener stops taking calls) adds a listener instead of a handler.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.streams: set[Endable] = set()
        self.listeners: list[Callable[[], None]] = []

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the event loop) when the drain begins."""
        self.listeners.append(listener)

    def install(self) -> None:
        """Chain onto the server's SIGTERM/SIGINT handlers (main thread only, like signals)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            signal.signal(sig, self._handler(loop, previous))

    def _handler(
        self,
        loop: asyncio.AbstractEventLoop,
        previous: Callable[[int, FrameType | None], object] | int | None,
    ) -> Callable[[int, FrameType | None], None]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.begin)
            if callable(previous):
                previous(signum, frame)

        return on_signal

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        logs.write_through()
        log.info("draining: %d open streams get %.1fs to finish", len(self.streams), self.grace)
        for listener in self.listeners:
            listener()
        asyncio.get_running_loop().call_later(self.time_to_end(), self.end_streams)

    def time_to_end(self) -> float:
        """Seconds from the signal until the streams still open are ended."""
        margin = MARGIN_SECONDS + MARGIN_PER_STREAM * len(self.streams)
        return max(
            0.0, self.grace - min(margin, max(MARGIN_SECONDS, self.grace * MAX_MARGIN_SHARE))
        )

    def end_streams(self) -> None:
        """End every stream still open, END_BATCH per turn of the loop."""
        self._end_batch(list(self.streams), 0)

    def _end_batch(self, streams: list[Endable], start: int) -> None:
        for stream in streams[start : start + END_BATCH]:
            if stream in self.streams:  # not one that finished meanwhile
                stream.end(REASON)
        if start + END_BATCH < len(streams):
            asyncio.get_running_loop().call_soon(self._end_batch, streams, start + END_BATCH)
