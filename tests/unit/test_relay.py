"""Streams are relayed whole-event by whole-event, and never end looking complete when they are not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from starlette.types import Message

from grok_proxy.calls.errors import UpstreamUnreachable
from grok_proxy.calls.record import RequestRecord
from grok_proxy.calls.relay import KEEPALIVE, RelayConfig, SseRelay
from grok_proxy.calls.route import CHAT
from tests.unit.harness import AUTH, chat, proxied, upstream

pytestmark = pytest.mark.anyio

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
HELLO = b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n'
DONE = b"data: [DONE]\n\n"


class Pieces(httpx.AsyncByteStream):
    """An upstream body delivered in the given pieces, optionally failing after them."""

    def __init__(self, *pieces: bytes, then: Exception | None = None) -> None:
        self.pieces = pieces
        self.then = then

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.then is not None:
            raise self.then


def sse(stream: Pieces, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, stream=stream)


async def relay(stream: Pieces) -> httpx.Response:
    router = upstream()
    router.post("/chat/completions").mock(return_value=sse(stream))
    async with proxied(router, xai_read_timeout=0.3) as client:
        return await client.post("/api/v1/chat/completions", json=chat(stream=True), headers=AUTH)


async def test_complete_stream_is_relayed_unchanged_with_no_buffering_headers() -> None:
    # Events split across network reads at awkward places must come out whole and identical.
    response = await relay(Pieces(ROLE[:10], ROLE[10:] + HELLO[:5], HELLO[5:], DONE))
    assert response.status_code == 200
    assert response.content == ROLE + HELLO + DONE
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


async def test_cut_mid_stream_ends_with_an_error_event_and_no_done() -> None:
    half = HELLO[: HELLO.index(b"Hello") + 3]
    response = await relay(Pieces(ROLE, half, then=httpx.ReadError("connection reset")))
    events = response.content.split(b"\n\n")
    assert response.content.startswith(ROLE)
    # The half event is dropped rather than passed on as garbage.
    assert b'"content"' not in response.content
    error = orjson.loads(events[1].removeprefix(b"data: "))["error"]
    assert "Stream interrupted" in error["message"]
    assert b"[DONE]" not in response.content


async def test_stall_mid_stream_is_reported_as_a_timeout() -> None:
    response = await relay(Pieces(ROLE, then=httpx.ReadTimeout("read timed out")))
    error = orjson.loads(response.content.split(b"\n\n")[1].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_timeout"
    assert "sent nothing for 0.3 seconds" in error["message"]
    assert b"[DONE]" not in response.content


async def test_stream_that_ends_without_done_is_not_presented_as_complete() -> None:
    response = await relay(Pieces(ROLE, HELLO))
    assert response.content.startswith(ROLE + HELLO)
    assert b"ended the stream before it was complete" in response.content
    assert b"[DONE]" not in response.content


async def test_upstream_error_before_the_stream_keeps_its_status() -> None:
    router = upstream()
    router.post("/chat/completions").respond(
        429, json={"code": "Some resource has been exhausted", "error": "Too many tokens"}
    )
    async with proxied(router) as client:
        response = await client.post(
            "/api/v1/chat/completions", json=chat(stream=True), headers=AUTH
        )
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"] == "Too many tokens"


class Upstream:
    """An open upstream stream whose chunks the test hands over one at a time."""

    def __init__(self) -> None:
        self.status = 200
        self.version = "HTTP/1.1"
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    def header(self, name: str) -> str:
        return ""

    async def read(self, limit: int) -> bytes:
        raise AssertionError("a stream is read chunk by chunk")

    async def read_chunk(self) -> bytes:
        return await self.chunks.get()  # cancel-safe: a queued chunk is never lost

    def untimed(self) -> None:
        pass  # reads here are never timed by the source itself

    async def aclose(self) -> None:
        self.closed = True


class Caller:
    """The ASGI send side: what the caller receives, and a way to wait for keep-alives."""

    def __init__(self) -> None:
        self.body = b""
        self.ended = False
        self.keepalives = 0
        self.heard = asyncio.Event()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.body += message["body"]
            self.ended = not message["more_body"]
            if message["body"] == KEEPALIVE:
                self.keepalives += 1
                self.heard.set()

    async def keepalive(self) -> None:
        self.heard.clear()
        await asyncio.wait_for(self.heard.wait(), 5)


async def receive() -> Message:
    await asyncio.Event().wait()  # the caller never hangs up
    raise AssertionError


def relay_of(source: Upstream, keepalive: float, read_timeout: float = 3600) -> SseRelay:
    config = RelayConfig(
        keepalive=keepalive,
        read_timeout=read_timeout,
        max_event=1 << 20,
        streams=set(),
        rewrite=None,
        describe=lambda exc: UpstreamUnreachable(exc.message),
    )
    return SseRelay(source, [], CHAT, config, RequestRecord(request_id="-"))


async def test_keepalive_comments_fill_silences_without_splitting_an_event() -> None:
    source, caller = Upstream(), Caller()
    relay = relay_of(source, keepalive=0.02)
    task = asyncio.ensure_future(relay({"type": "http"}, receive, caller.send))
    source.chunks.put_nowait(ROLE)
    await caller.keepalive()
    source.chunks.put_nowait(HELLO[:10])  # half an event: held back while the silence lasts
    await caller.keepalive()
    await caller.keepalive()
    source.chunks.put_nowait(HELLO[10:] + DONE)
    source.chunks.put_nowait(b"")
    await asyncio.wait_for(task, 5)
    assert caller.body.replace(KEEPALIVE, b"") == ROLE + HELLO + DONE
    assert caller.body.startswith(ROLE + KEEPALIVE)
    assert caller.body.endswith(KEEPALIVE + HELLO + DONE)
    assert caller.keepalives >= 3
    assert caller.ended
    assert source.closed


async def test_a_shutdown_at_the_moment_of_a_keepalive_still_ends_the_stream() -> None:
    source, caller = Upstream(), Caller()
    relay = relay_of(source, keepalive=3600)
    task = asyncio.ensure_future(relay({"type": "http"}, receive, caller.send))
    source.chunks.put_nowait(ROLE)
    while caller.body != ROLE:
        await asyncio.sleep(0)
    # The clock rings and the shutdown comes before the relay runs again: both cancel it.
    assert relay.clock is not None
    relay.clock.quiet_since = -3600.0
    relay.clock._tick()
    relay.end("The proxy is shutting down.")
    await asyncio.wait_for(task, 5)
    assert caller.body.startswith(ROLE)
    assert b"proxy_shutting_down" in caller.body
    assert KEEPALIVE not in caller.body
    assert caller.ended
    assert source.closed


async def test_keepalives_do_not_hide_a_silent_upstream_from_the_read_timeout() -> None:
    # The caller hears comments every 20 ms, but upstream said nothing for 150 ms: cut.
    source, caller = Upstream(), Caller()
    relay = relay_of(source, keepalive=0.02, read_timeout=0.15)
    task = asyncio.ensure_future(relay({"type": "http"}, receive, caller.send))
    source.chunks.put_nowait(ROLE)
    await asyncio.wait_for(task, 5)
    assert caller.body.startswith(ROLE + KEEPALIVE)
    assert caller.keepalives >= 3
    last = caller.body.rsplit(b"\n\n", 2)[-2]
    assert b"Stream interrupted" in last
    assert b"[DONE]" not in caller.body
    assert relay.record.error_kind == "stream_stalled"
    assert caller.ended
    assert source.closed
