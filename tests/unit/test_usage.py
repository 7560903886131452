"""Usage and cost read exactly from every answer shape xAI sends, counted once.

The stream shapes are xAI's as recorded (docs.x.ai and 2026 recordings: the usage-only
chunk, a final chunk carrying both `choices` and `usage` followed by Grok's extra final
chunk, `usage: null` on every chunk, Anthropic's split usage, Responses' completed event).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from xai_sdk.proto.v6 import usage_pb2

from grok_proxy.calls import usage
from tests.unit.harness import AUTH, chat, proxied, upstream
from tests.unit.test_relay import Pieces, sse

pytestmark = pytest.mark.anyio

TICKS = 123_456_789  # about 1.2 cents
GROK_USAGE = {
    "prompt_tokens": 126,
    "completion_tokens": 2,
    "total_tokens": 251,
    "prompt_tokens_details": {"text_tokens": 126, "cached_tokens": 125},
    "completion_tokens_details": {"reasoning_tokens": 123},
    "num_sources_used": 4,
    "num_server_side_tools_used": 3,
    "cost_in_usd_ticks": TICKS,
}
EXACT = {
    "prompt": 126,
    "completion": 2,
    "reasoning": 123,
    "cached": 125,
    "cost_ticks": TICKS,
    "sources": 4,
    "server_side_tools": 3,
}


def chunk(choices: list[Any], **extra: Any) -> bytes:
    data = {"id": "c1", "object": "chat.completion.chunk", "model": "grok-4", "choices": choices}
    return b"data: " + orjson.dumps({**data, **extra}) + b"\n\n"


DELTA = [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]
STOP = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
DONE = b"data: [DONE]\n\n"

CHAT_STREAMS = {
    "usage-only final chunk": [chunk(DELTA), chunk(STOP), chunk([], usage=GROK_USAGE), DONE],
    "final chunk with choices, then Grok's extra chunk": [
        chunk(DELTA),
        chunk(STOP, usage=GROK_USAGE),
        chunk([], usage=GROK_USAGE),
        DONE,
    ],
    "final chunk with choices only": [chunk(DELTA), chunk(STOP, usage=GROK_USAGE), DONE],
    "usage null on every chunk but the last": [
        chunk(DELTA, usage=None),
        chunk(STOP, usage=None),
        chunk([], usage=GROK_USAGE),
        DONE,
    ],
    "running totals": [
        chunk(DELTA, usage={**GROK_USAGE, "completion_tokens": 1, "cost_in_usd_ticks": 5}),
        chunk(STOP, usage=GROK_USAGE),
        DONE,
    ],
}


def folded(events: list[bytes]) -> usage.Usage | None:
    """What the relay keeps of a stream's events (SseRelay._filter does exactly this)."""
    found = None
    for event in events:
        data = event.removeprefix(b"data: ").strip()
        if usage.USAGE_MARK in data:
            one = usage.from_event(orjson.loads(data))
            if one is not None:
                found = usage.merge(found, one)
    return found


@pytest.mark.parametrize("shape", CHAT_STREAMS)
def test_chat_stream_usage_is_read_once_whatever_the_shape(shape: str) -> None:
    assert folded(CHAT_STREAMS[shape]) == EXACT


def test_anthropic_stream_usage_is_split_over_two_events() -> None:
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 9, "cache_read_input_tokens": 4, "output_tokens": 1}},
    }
    delta = {"type": "message_delta", "usage": {"output_tokens": 32, "cost_in_usd_ticks": 77}}
    events = [b"data: " + orjson.dumps(e) for e in (start, delta)]
    assert folded(events) == {
        "prompt": 9,
        "completion": 32,
        "reasoning": 0,
        "cached": 4,
        "cost_ticks": 77,
    }


RESPONSES_USAGE = {
    "input_tokens": 200,
    "input_tokens_details": {"cached_tokens": 150},
    "output_tokens": 50,
    "output_tokens_details": {"reasoning_tokens": 40},
    "total_tokens": 250,
    "num_sources_used": 0,
    "num_server_side_tools_used": 2,
    "cost_in_usd_ticks": 9_000,
}
RESPONSES_EXACT = {
    "prompt": 200,
    "completion": 10,  # Responses count reasoning inside output_tokens: kept apart
    "reasoning": 40,
    "cached": 150,
    "cost_ticks": 9_000,
    "sources": 0,
    "server_side_tools": 2,
}


def test_responses_stream_usage_comes_with_the_completed_response() -> None:
    created = {"type": "response.created", "response": {"id": "r", "usage": None}}
    completed = {"type": "response.completed", "response": {"id": "r", "usage": RESPONSES_USAGE}}
    events = [b"data: " + orjson.dumps(e) for e in (created, completed)]
    assert folded(events) == RESPONSES_EXACT


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"choices": [], "usage": GROK_USAGE}, EXACT),
        ({"object": "response", "usage": RESPONSES_USAGE}, RESPONSES_EXACT),
        (
            {"data": [{"url": "https://x/i.jpg"}], "usage": {"cost_in_usd_ticks": 700_000_000}},
            {"prompt": 0, "completion": 0, "reasoning": 0, "cached": 0, "cost_ticks": 700_000_000},
        ),
        (  # Responses' older field: nano dollars
            {"usage": {"input_tokens": 1, "output_tokens": 1, "cost_in_nano_usd": 30}},
            {"prompt": 1, "completion": 1, "reasoning": 0, "cached": 0, "cost_ticks": 300},
        ),
        ({"data": [], "usage": None}, None),
        (  # a JSON `true` is not a count
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": True}},
            {"prompt": 3, "completion": 0, "reasoning": 0, "cached": 0},
        ),
    ],
)
def test_plain_answers(body: dict[str, Any], expected: usage.Usage | None) -> None:
    assert usage.from_body(body) == expected


def test_grpc_sampling_usage_keeps_cost_tools_and_sources() -> None:
    message = usage_pb2.SamplingUsage(
        prompt_tokens=126,
        completion_tokens=2,
        reasoning_tokens=123,
        total_tokens=251,
        cached_prompt_text_tokens=125,
        num_sources_used=4,
        server_side_tools_used=[1, 1, 2],
        cost_in_usd_ticks=TICKS,
    )
    assert usage.from_grpc(message) == EXACT
    without_cost = usage.from_grpc(usage_pb2.SamplingUsage(prompt_tokens=1))
    assert "cost_ticks" not in without_cost  # unknown, not free: the price table decides


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("shape", CHAT_STREAMS)
async def test_metrics_count_a_relayed_stream_exactly_once(shape: str) -> None:
    before = {
        kind: sample("grok_proxy_tokens_total", model="grok-4", kind=kind)
        for kind in usage.TOKEN_KINDS
    }
    cost_before = sample("grok_proxy_cost_dollars_total", model="grok-4")
    tools_before = sample("grok_proxy_billed_uses_total", model="grok-4", kind="server_side_tools")
    router = upstream()
    router.post("/chat/completions").mock(return_value=sse(Pieces(*CHAT_STREAMS[shape])))
    async with proxied(router) as client:
        answer = await client.post("/api/v1/chat/completions", json=chat(stream=True), headers=AUTH)
    assert answer.content == b"".join(CHAT_STREAMS[shape])  # relayed unchanged
    for kind in usage.TOKEN_KINDS:
        counted = sample("grok_proxy_tokens_total", model="grok-4", kind=kind) - before[kind]
        assert counted == EXACT[kind], kind
    cost = sample("grok_proxy_cost_dollars_total", model="grok-4") - cost_before
    assert cost == pytest.approx(TICKS / 1e10)
    tools = sample("grok_proxy_billed_uses_total", model="grok-4", kind="server_side_tools")
    assert tools - tools_before == 3
