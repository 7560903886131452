"""Several workers: one killed outright is restarted, and its open streams stop counting."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import KEY
from tests.processes import Simulator, proxy


def workers_of(parent: int) -> list[int]:
    """uvicorn's worker processes (spawned children; not multiprocessing's helper)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def gauge(url: str, name: str) -> float | None:
    """The gauge's value on /metrics, or None while no worker answers."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))


def test_killed_workers_open_streams_stop_counting(sim: Simulator) -> None:
    with proxy(sim.base_url, workers=2) as running:
        held = {
            "model": "grok-4@chunks=2000,pace=20",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        headers = {"authorization": f"Bearer {KEY}"}
        with (
            httpx.Client(headers=headers, timeout=30) as client,
            client.stream("POST", f"{running.api}/chat/completions", json=held) as stream,
        ):
            # The iterator stays referenced: once collected, httpx would close the stream.
            chunks = stream.iter_bytes()
            next(chunks)
            assert gauge(running.url, "grok_proxy_open_streams ") == 1
            killed = workers_of(running.process.pid)
            assert len(killed) == 2
            for pid in killed:
                os.kill(pid, signal.SIGKILL)  # no exit hook runs: as after the OOM killer

        # uvicorn starts new workers; the dead ones' stream no longer counts.
        deadline = time.monotonic() + 30
        while True:
            alive = set(workers_of(running.process.pid))
            value = gauge(running.url, "grok_proxy_open_streams ")
            if len(alive) == 2 and not alive & set(killed) and value is not None:
                break
            assert time.monotonic() < deadline, (alive, value)
            time.sleep(0.1)
        assert value == 0
