"""Two ways of interrupting a task that waits on the upstream, both cheap on the hot path.

`HangUpWatch` cancels the task when the caller hangs up (nobody pays for tokens no one
reads); `KeepAliveClock` interrupts a stream's wait during long silences so a keep-alive
comment can go out. Both take their cancellation back the way `asyncio.timeout` does, so
one arriving at the same moment as the other is never lost.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive


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
