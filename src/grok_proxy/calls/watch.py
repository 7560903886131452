"""Two ways of interrupting a task that waits on the upstream, both cheap on the hot path.

`HangUpWatch` cancels the task when the caller hangs up (nobody pays for tokens no one
reads); `StreamClock` interrupts a stream's wait during long silences, so a keep-alive
comment can go out or a silent upstream is given up on. Both take their cancellation
back the way `asyncio.timeout` does, so one arriving at the same moment as the other is
never lost.
"""

from __future__ import annotations

import asyncio

from grok_proxy.calls.asgi import Receive


class HangUpWatch:
    """Cancels the current task if the caller hangs up while the block runs.

    A watcher task listens for `http.disconnect` (uvicorn's send() stays quiet after a
    hang-up, so nothing else would notice). Creating and cancelling that task costs ~70 µs,
    a sixth of a fast request, so it starts only once the block has run for `after`
    seconds: answers faster than that never pay for it, and a slow call (every real model
    call) is still closed within `after` of the hang-up. While a request body is still
    streaming upstream, the body reader owns `receive` (and notices a hang-up itself): the
    watch then waits for `body_done` before it listens. After the block, `gone` says
    whether the caller left; the cancellation it caused has been withdrawn, so cleanup can
    still await.
    """

    def __init__(
        self, receive: Receive, after: float = 0.05, body_done: asyncio.Event | None = None
    ) -> None:
        self.receive = receive
        self.after = after
        self.body_done = body_done
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
        if self.body_done is not None:
            await self.body_done.wait()
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


class StreamClock:
    """Interrupts a stream's wait for upstream: for a keep-alive, or when upstream is silent.

    One timer per stream that re-arms itself, instead of a timeout per chunk: a stream
    waits once per chunk, and creating and cancelling a timer each time cost more than
    relaying the chunk (docs/benchmarks.md). The same timer enforces the read timeout of a
    stream, so the HTTP client's own per-read timer is off for it. The interruption is a
    cancellation of the relay's task, taken back by the relay exactly as `asyncio.timeout`
    does it, so a hang-up or shutdown arriving at the same moment still gets through.
    """

    def __init__(self, task: asyncio.Task[None], keepalive: float, silence: float) -> None:
        self.task = task
        self.keepalive = keepalive  # 0: no keep-alives
        self.silence = silence  # longest upstream silence while waiting (the read timeout)
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        # While the relay waits: since when upstream has said nothing, and since when
        # the caller has heard nothing (a keep-alive restarts that one only).
        self.silent_since: float | None = None
        self.quiet_since = now
        self.rang: str | None = None  # "keepalive" or "silence", until answered
        self.cancelling = 0
        self.timer = self.loop.call_at(now + self._period(), self._tick)

    def _period(self) -> float:
        return min(self.keepalive, self.silence) if self.keepalive else self.silence

    def waiting(self, fresh: bool) -> None:
        """The relay starts waiting; `fresh` when upstream sent bytes since the last wait."""
        now = self.loop.time()
        if fresh or self.silent_since is None:
            self.silent_since = now
        self.quiet_since = now

    def heard(self) -> None:
        """The wait ended with upstream bytes (or the relay stopped waiting)."""
        self.silent_since = None

    def _tick(self) -> None:
        now = self.loop.time()
        due = now + self._period()
        since = self.silent_since
        if since is not None and self.rang is None:
            if now - since >= self.silence:
                self._ring("silence")
            elif self.keepalive and now - self.quiet_since >= self.keepalive:
                self._ring("keepalive")
            else:
                due = min(since + self.silence, self.quiet_since + (self.keepalive or self.silence))
        self.timer = self.loop.call_at(max(due, now + 0.001), self._tick)

    def _ring(self, why: str) -> None:
        self.rang = why
        self.cancelling = self.task.cancelling()
        self.task.cancel()

    def answered(self) -> str | None:
        """After a CancelledError: why this clock rang (now withdrawn), or None if not it."""
        why, self.rang = self.rang, None
        if why is None:
            return None
        return why if self.task.uncancel() <= self.cancelling else None

    def stop(self) -> None:
        self.timer.cancel()
