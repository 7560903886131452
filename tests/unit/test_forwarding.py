"""What reaches the upstream, and what comes back, for plain requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.unit.harness import AUTH, KEY, chat, proxied, upstream

pytestmark = pytest.mark.anyio

OK = {"id": "x", "object": "chat.completion", "choices": []}


async def test_body_reaches_upstream_byte_for_byte() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    # Odd spacing, key order and a field the proxy does not know must all survive.
    body = b'{ "messages":[{"role":"user","content":"hi"}],  "model":"grok-4", "future_field": {"x": 1} }'
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", content=body, headers=AUTH)
    assert response.status_code == 200
    assert route.calls.last.request.content == body
    assert route.calls.last.request.url == "https://api.x.ai/v1/chat/completions"


async def test_only_allow_listed_headers_go_upstream() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    headers = {
        **AUTH,
        "cookie": "session=secret",
        "x-forwarded-for": "10.0.0.1",
        "proxy-authorization": "Basic abc",
        "x-grok-conv-id": "conv-42",
        "user-agent": "OpenAI/Python 9.9",
        "x-stainless-lang": "python",
        "content-type": "application/x-www-form-urlencoded",
    }
    async with proxied(router) as client:
        await client.post("/v1/chat/completions", content=orjson.dumps(chat()), headers=headers)
    sent = route.calls.last.request.headers
    assert sent["authorization"] == f"Bearer {KEY}"
    assert sent["x-grok-conv-id"] == "conv-42"
    assert sent["user-agent"] == "OpenAI/Python 9.9"
    assert sent["x-stainless-lang"] == "python"
    # A validated body is JSON, whatever curl -d labelled it.
    assert sent["content-type"] == "application/json"
    for leaked in ("cookie", "x-forwarded-for", "proxy-authorization"):
        assert leaked not in sent
    # The upstream's own host, never the one the caller addressed the proxy by.
    assert sent["host"].startswith("127.0.0.1:")


async def test_missing_key_is_401_and_nothing_goes_upstream() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", json=chat())
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert "Authorization: Bearer" in error["message"]
    assert not route.called


async def test_useful_upstream_headers_come_back() -> None:
    router = upstream()
    router.post("/chat/completions").respond(
        200,
        json=OK,
        headers={
            "x-request-id": "req-1",
            "x-ratelimit-remaining-requests": "99",
            "set-cookie": "__cf_bm=abc",
            "server": "cloudflare",
        },
    )
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    # X-Request-ID is the proxy's own; upstream's comes back under its own name.
    assert response.headers["x-upstream-request-id"] == "req-1"
    assert response.headers["x-request-id"] != "req-1"
    assert response.headers["x-ratelimit-remaining-requests"] == "99"
    assert "set-cookie" not in response.headers
    assert response.headers["content-type"] == "application/json"
    assert response.json() == OK


async def test_body_over_the_limit_is_413_and_not_forwarded() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    async with proxied(router, max_body_bytes=100) as client:
        response = await client.post(
            "/api/v1/chat/completions", json=chat(padding="x" * 200), headers=AUTH
        )
    assert response.status_code == 413
    assert "100 bytes" in response.json()["error"]["message"]
    assert not route.called


async def test_unknown_route_and_wrong_method_use_the_envelope() -> None:
    async with proxied(upstream()) as client:
        missing = await client.get("/nowhere")
        wrong = await client.post("/health", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No such route: /nowhere"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


async def test_health_does_not_call_upstream() -> None:
    router = upstream()
    async with proxied(router) as client:
        for path in ("/health", "/api/v1/health", "/v1/health"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json()["status"] == "healthy"
    assert not router.calls


@pytest.mark.parametrize(
    ("failure", "status", "words"),
    [
        (httpx.ReadTimeout("timed out"), 504, "sent nothing for 0.3 seconds"),
        (httpx.ConnectError("reset"), 502, "upstream connection was lost"),
    ],
)
async def test_transport_failures_map_to_502_and_504(
    failure: Exception, status: int, words: str
) -> None:
    router = upstream()
    router.post("/chat/completions").mock(side_effect=failure)
    async with proxied(router, xai_read_timeout=0.3) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]


async def test_a_refused_connection_is_502_naming_the_cause() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    async with proxied(upstream(), xai_base_url=f"http://127.0.0.1:{port}/v1") as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert message.startswith("Could not reach the upstream API")
    assert "refused" in message.lower()


class Trickle(httpx.AsyncByteStream):
    """A body that arrives a few bytes at a time, each piece within any read timeout."""

    def __init__(self, body: bytes, every: float) -> None:
        self.body = body
        self.every = every

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(0, len(self.body), 4):
            await asyncio.sleep(self.every)
            yield self.body[index : index + 4]


async def test_a_non_streamed_answer_has_a_total_deadline() -> None:
    # Each byte arrives well within the read timeout; the whole answer does not.
    router = upstream()
    slow = httpx.Response(
        200, headers={"content-type": "application/json"}, stream=Trickle(orjson.dumps(OK), 0.05)
    )
    router.post("/chat/completions").mock(return_value=slow)
    async with proxied(router, xai_total_timeout=0.3, xai_read_timeout=5) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 504
    assert "XAI_TOTAL_TIMEOUT" in response.json()["error"]["message"]


async def test_an_answer_over_the_response_limit_is_502_naming_the_setting() -> None:
    router = upstream()
    router.post("/chat/completions").respond(200, json={**OK, "padding": "x" * 4096})
    async with proxied(router, max_response_bytes=1024) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 502
    assert "MAX_RESPONSE_BYTES" in response.json()["error"]["message"]


async def test_every_value_of_a_repeated_header_goes_upstream() -> None:
    router = upstream()
    route = router.post("/messages").respond(200, json={"id": "m", "type": "message"})
    headers = [
        ("x-api-key", KEY),
        ("anthropic-beta", "tools-2024-04-04"),
        ("anthropic-beta", "pdfs-2024-09-25"),
    ]
    body = {"model": "grok-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with proxied(router) as client:
        response = await client.post("/api/v1/messages", json=body, headers=headers)
    assert response.status_code == 200
    sent = route.calls.last.request.headers.get_list("anthropic-beta")
    assert sent == ["tools-2024-04-04", "pdfs-2024-09-25"]


async def test_an_oversized_stream_event_ends_the_stream_with_an_error() -> None:
    router = upstream()
    huge = b"data: " + b"x" * 4096 + b"\n\n"
    router.post("/chat/completions").respond(
        200, headers={"content-type": "text/event-stream"}, content=huge
    )
    async with proxied(router, max_sse_event_bytes=1024) as client:
        response = await client.post(
            "/api/v1/chat/completions", json=chat(stream=True), headers=AUTH
        )
    assert b"x" * 100 not in response.content
    assert b"MAX_SSE_EVENT_BYTES" in response.content
