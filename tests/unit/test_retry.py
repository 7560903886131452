"""The retry policy: what is retried, how often, how long it waits, and what the caller sees."""

from __future__ import annotations

import socket

import httpx
import pytest

from grok_proxy.calls.retry import RetryPolicy, retry_after_seconds
from grok_proxy.config import Settings
from tests.unit.harness import AUTH, chat, proxied, upstream

pytestmark = pytest.mark.anyio

FAST = {"xai_max_retries": 2, "xai_retry_backoff": 0.001}
OK = {"id": "x", "object": "chat.completion", "choices": []}


@pytest.mark.parametrize(
    ("status", "headers", "extra"),
    [
        (429, {"retry-after": "0"}, {}),  # 429 that says when: nothing was started
        (503, {}, {}),  # the upstream is not serving
        (502, {}, {"idempotency-key": "k-1"}),  # the caller made resending safe
        (504, {}, {"idempotency-key": "k-2"}),
    ],
)
async def test_retryable_status_is_retried_until_success(
    status: int, headers: dict[str, str], extra: dict[str, str]
) -> None:
    router = upstream()
    route = router.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(status, json={"error": "busy"}, headers=headers),
            httpx.Response(200, json=OK),
        ]
    )
    async with proxied(router, **FAST) as client:
        response = await client.post(
            "/api/v1/chat/completions", json=chat(), headers={**AUTH, **extra}
        )
    assert response.status_code == 200
    assert response.headers["x-grok-proxy-attempts"] == "2"
    assert route.call_count == 2


@pytest.mark.parametrize("status", [502, 504, 429])
async def test_a_post_that_may_be_running_is_never_sent_twice(status: int) -> None:
    # A 502/504 may come from a gateway while xAI still generates (and bills) the answer;
    # a 429 without Retry-After does not say that nothing started either.
    router = upstream()
    route = router.post("/chat/completions").respond(status, json={"error": "busy"})
    async with proxied(router, **FAST) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert route.call_count == 1


async def test_idempotent_methods_are_retried_on_gateway_errors() -> None:
    router = upstream()
    route = router.get("/models").mock(
        side_effect=[
            httpx.Response(502, json={"error": "bad gateway"}),
            httpx.Response(200, json=OK),
        ]
    )
    async with proxied(router, **FAST) as client:
        response = await client.get("/api/v1/models", headers=AUTH)
    assert response.status_code == 200
    assert route.call_count == 2


async def test_a_caller_that_retries_itself_gets_no_retries_here() -> None:
    # The OpenAI and Anthropic SDKs retry on their own: proxy retries would multiply theirs.
    router = upstream()
    route = router.post("/chat/completions").respond(503, json={"error": "busy"})
    async with proxied(router, **FAST) as client:
        response = await client.post(
            "/api/v1/chat/completions",
            json=chat(),
            headers={**AUTH, "x-stainless-retry-count": "0"},
        )
    assert response.status_code == 503
    assert route.call_count == 1


async def test_a_caller_can_cap_retries_per_request() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(503, json={"error": "busy"})
    async with proxied(router, **FAST) as client:
        await client.post(
            "/api/v1/chat/completions",
            json=chat(),
            headers={**AUTH, "x-grok-proxy-max-retries": "1"},
        )
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 500])
async def test_other_errors_are_never_retried(status: int) -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(status, json={"error": "no"})
    async with proxied(router, **FAST) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert response.headers["x-grok-proxy-attempts"] == "1"
    assert route.call_count == 1


async def test_attempts_are_bounded_and_the_last_answer_is_returned() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(503, json={"code": "x", "error": "overloaded"})
    async with proxied(router, **FAST) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "overloaded"
    assert response.headers["x-grok-proxy-attempts"] == "3"
    assert route.call_count == 3


async def test_connect_errors_are_retried_and_reported_with_attempts() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = {**FAST, "xai_base_url": f"http://127.0.0.1:{port}/v1"}
    async with proxied(upstream(), **settings) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 502
    assert response.headers["x-grok-proxy-attempts"] == "3"


async def test_read_timeouts_are_not_retried() -> None:
    # Upstream may already be working on it: a retry could pay for the answer twice.
    router = upstream()
    route = router.post("/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    async with proxied(router, **FAST, xai_read_timeout=0.3) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 504
    assert route.call_count == 1


async def test_retries_can_be_turned_off() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(503, json={"error": "busy"})
    async with proxied(router, xai_max_retries=0) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 503
    assert route.call_count == 1


async def test_retry_after_beyond_the_deadline_is_not_waited_for() -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(
        429, json={"error": "slow down"}, headers={"retry-after": "20"}
    )
    settings = {**FAST, "xai_retry_max_wait": 60, "xai_retry_deadline": 5}
    async with proxied(router, **settings) as client:
        response = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "20"
    assert route.call_count == 1


def test_waits_grow_with_jitter_and_respect_the_cap() -> None:
    policy = RetryPolicy(Settings(xai_retry_backoff=1, xai_retry_max_wait=3))
    first, second, third = (policy.wait_before(n, None) for n in (1, 2, 3))
    assert 0.5 <= first <= 1
    assert 1 <= second <= 2
    assert third <= 3
    assert policy.wait_before(1, 2.5) == 2.5
    assert policy.wait_before(1, 99) == 3


@pytest.mark.parametrize(
    ("ms", "header", "seconds"),
    [("", "3", 3.0), ("1500", "", 1.5), ("", "", None), ("", "soon", None), ("", "1.5", 1.5)],
)
def test_retry_after_parsing(ms: str, header: str, seconds: float | None) -> None:
    assert retry_after_seconds(ms, header) == seconds


def test_retry_after_as_a_date() -> None:
    waited = retry_after_seconds("", "Wed, 21 Oct 2015 07:28:00 GMT")
    assert waited == 0.0  # a date in the past means "now"
