"""The one shutdown fan-out: every protocol hears of SIGTERM through the worker's Drain."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from grok_proxy.serving.lifecycle import Drain

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
