"""SIGTERM: stop accepting, let in-flight work finish, end what is left honestly."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.conftest import KEY
from tests.processes import Simulator, output_of, proxy


def stream(url: str, model: str, into: dict[str, bytes]) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST",
        f"{url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as response:
        into[model] = response.read()


def test_sigterm_drains_then_ends_streams_with_an_error_event(fresh_sim: Simulator) -> None:
    short, long = "grok-4@chunks=6,pace=100", "grok-4@chunks=300,pace=100"
    results: dict[str, bytes] = {}
    with proxy(fresh_sim.base_url, shutdown_grace_seconds="2") as running:
        threads = [
            threading.Thread(target=stream, args=(running.api, m, results)) for m in (short, long)
        ]
        for thread in threads:
            thread.start()
        fresh_sim.wait_for_stat("streams_started", 2, timeout=5)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        draining = _health_status(running.url)
        for thread in threads:
            thread.join(timeout=10)
        running.process.wait(timeout=10)
        stopped = time.monotonic() - signalled
        # uvicorn ends the process by re-raising the signal, at once: its last log lines
        # must already be written.
        output = output_of(running.process)
    assert "Application shutdown complete" in output
    assert "Finished server process" in output
    # The short stream finished normally within the grace period.
    assert results[short].endswith(b"data: [DONE]\n\n")
    # The long one was ended at the deadline with an error event, not cut silently or faked.
    assert b"[DONE]" not in results[long]
    assert b"tok0" in results[long]
    assert b"grok-proxy is shutting down" in results[long].rstrip().split(b"\n\n")[-1]
    assert stopped < 5
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert running.process.returncode in {0, -signal.SIGTERM}
    # New connections are refused at once (or, if one slipped in, told the worker is draining).
    assert draining in {None, 503}


def _health_status(url: str) -> int | None:
    """/health's status, or None when the connection is refused."""
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code
    except httpx.TransportError:
        return None
