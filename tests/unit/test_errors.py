"""Upstream errors keep their status and reason; bad input names its field."""

from __future__ import annotations

import gzip

import httpx
import pytest

from grok_proxy.calls.errors import Flavor, upstream_error
from tests.unit.harness import AUTH, KEY, chat, proxied, upstream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
    ],
)
async def test_xai_error_keeps_status_and_message(status: int, kind: str) -> None:
    router = upstream()
    router.post("/chat/completions").respond(
        status,
        json={
            "code": "Some requested entity was not found",
            "error": "The model grok-9 does not exist.",
        },
        headers={"retry-after": "7"},
    )
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    assert response.json() == {
        "error": {
            "message": "The model grok-9 does not exist.",
            "type": kind,
            "param": None,
            "code": "Some requested entity was not found",
        }
    }


def test_openai_shaped_upstream_error_keeps_its_message() -> None:
    error = upstream_error(
        429, b'{"error": {"message": "slow down", "code": "rate_limit"}}', "application/json"
    )
    assert (error.status, error.message, error.code) == (429, "slow down", "rate_limit")


def test_html_error_page_becomes_a_clear_message() -> None:
    error = upstream_error(502, b"<html>cloudflare</html>", "text/html; charset=utf-8")
    assert error.status == 502
    assert error.message == "Upstream answered 502 Bad Gateway with 23 bytes of text/html."


def test_empty_error_body() -> None:
    assert upstream_error(503, b"", "").message == (
        "Upstream answered 503 Service Unavailable with an empty body."
    )


def test_anthropic_envelope() -> None:
    error = upstream_error(404, b'{"code": "x", "error": "no such model"}', "application/json")
    assert error.envelope(Flavor.ANTHROPIC) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such model"},
    }


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        (b'{"model": "grok-4", "messages": [', 400, None, "not valid JSON"),
        (b"", 400, None, "empty"),
        (b"[1, 2]", 422, None, "must be a JSON object"),
        # What the proxy reads is checked with xAI's types; everything else is xAI's call.
        (b'{"model": 4, "messages": []}', 422, "model", "valid string"),
        (b'{"model": "grok-4", "stream": "sometimes"}', 422, "stream", "valid boolean"),
        (
            b'{"model": "grok-4", "stream": true, "stream_options": {"include_usage": []}}',
            422,
            "stream_options.include_usage",
            "valid boolean",
        ),
    ],
)
async def test_bad_input_is_refused_with_the_field_named(
    body: bytes, status: int, param: str | None, words: str
) -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json={})
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", content=body, headers=AUTH)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]
    assert KEY not in response.text
    assert "Traceback" not in response.text
    assert not route.called


async def test_valid_rich_request_passes() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json={})
    body = chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "content": "40 C", "tool_call_id": "call_1"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
        },
        stream=False,
        temperature=0.2,
        top_p=1,
        stop=["\n"],
        seed=7,
    )
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    assert route.called


async def test_an_error_the_upstream_compressed_comes_back_as_a_plain_envelope() -> None:
    # Identity is asked for; an upstream that compresses its error anyway must not leave
    # the caller with `content-encoding: gzip` on the proxy's own plain JSON envelope.
    router = upstream()
    compressed = gzip.compress(b'{"error": "Incorrect API key provided."}')
    router.post("/chat/completions").respond(
        401,
        stream=httpx.ByteStream(compressed),  # sent as it is, not decoded first
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    async with proxied(router) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 401
    assert "content-encoding" not in response.headers
    assert response.json()["error"]["type"] == "authentication_error"
