"""Streams framed every way a server may frame SSE reach the client byte for byte."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

AUTH = {"authorization": f"Bearer {KEY}"}
FRAMINGS = ["lf", "crlf", "split", "batch", "comments", "multiline", "crlf+split+batch"]
ROUTES: dict[str, dict[str, object]] = {
    "chat/completions": {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream_options": {"include_usage": True},
    },
    "responses": {"input": "Hi"},
    "messages": {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
}


def last_stream(sim: Simulator) -> bytes:
    streams = httpx.get(f"{sim.url}/_sim/streams").json()
    return base64.b64decode(streams[-1])


def streamed(url: str, body: dict[str, object]) -> bytes:
    with httpx.stream("POST", url, json=body, headers=AUTH) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_simulator_frames_as_asked(sim: Simulator, framing: str) -> None:
    body = {"model": f"grok-4@frame={framing}", "stream": True, **ROUTES["chat/completions"]}
    sent = streamed(f"{sim.base_url}/chat/completions", body)
    assert sent == last_stream(sim)
    assert sent.endswith(b"[DONE]\r\n\r\n" if "crlf" in framing else b"[DONE]\n\n")
    if "comments" in framing:
        assert sent.startswith(b": ")
    if "multiline" in framing:
        assert b'data: {\ndata:   "id"' in sent


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("framing", FRAMINGS)
def test_framings_relay_byte_exact(live: Proxy, sim: Simulator, framing: str, route: str) -> None:
    body = {"model": f"grok-4@frame={framing}", "stream": True, **ROUTES[route]}
    received = streamed(f"{live.api}/{route}", body)
    assert received == last_stream(sim)
