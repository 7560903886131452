"""The one shutdown fan-out: every protocol hears of SIGTERM through the worker's Drain."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from grok_proxy.serving.lifecycle import END_BATCH, MARGIN_PER_STREAM, MARGIN_SECONDS, Drain

pytestmark = pytest.mark.anyio


async def test_a_signal_reaches_every_listener_once_and_the_previous_handler() -> None:
    drain = Drain(grace=30)
    heard: list[str] = []
    drain.on_begin(lambda: heard.append("grpc"))
    drain.on_begin(lambda: heard.append("other"))
    previous = signal.signal(signal.SIGINT, lambda *_: heard.append("server"))
    try:
        drain.install()
        for _ in range(2):  # a second signal (impatient operator) begins nothing new
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0)  # the handler ran; the loop now runs what it scheduled
            await asyncio.sleep(0)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert drain.draining
    assert heard == ["server", "grpc", "other", "server"]


class Stream:
    def __init__(self, ended: list[int], turn: list[int]) -> None:
        self.ended, self.turn = ended, turn

    def end(self, reason: str) -> None:
        self.ended.append(self.turn[0])


async def test_thousands_of_streams_are_ended_in_batches_across_loop_turns() -> None:
    # Ending 2,000 sessions in one turn of the loop held every other caller 112-365 ms.
    drain = Drain(grace=30)
    ended: list[int] = []
    turn = [0]
    drain.streams = {Stream(ended, turn) for _ in range(2 * END_BATCH + 1)}
    drain.end_streams()
    for _ in range(5):
        turn[0] += 1
        await asyncio.sleep(0)
    assert len(ended) == 2 * END_BATCH + 1  # every one ended
    assert max(ended.count(t) for t in set(ended)) <= END_BATCH
    assert len(set(ended)) == 3


async def test_more_open_streams_are_ended_earlier_within_the_grace() -> None:
    drain = Drain(grace=30)
    assert drain.time_to_end() == 30 - MARGIN_SECONDS  # nothing open: the usual margin
    drain.streams = {Stream([], [0]) for _ in range(2000)}
    assert drain.time_to_end() == pytest.approx(30 - MARGIN_SECONDS - 2000 * MARGIN_PER_STREAM)
    drain.grace = 3  # a short grace keeps at least half of it for the streams
    assert drain.time_to_end() == pytest.approx(1.5)
    drain.grace = 0.2
    assert drain.time_to_end() == 0
