"""The twin plays an agent's counterpart: realtime function calls that follow the tool's schema
and Anthropic extended thinking, through the real proxy with real clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

TIMEOUT = 10.0
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER}
TIME_TOOL = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
}


@pytest.fixture
def voice(live: Proxy, fresh_sim: Simulator) -> Iterator[ClientConnection]:
    url = "ws" + live.url.removeprefix("http") + "/v1/realtime?model=grok-voice-latest@pace=1"
    headers = {"Authorization": f"Bearer {KEY}"}
    with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        assert receive(ws)["type"] == "session.created"
        assert receive(ws)["type"] == "conversation.created"
        yield ws


def receive(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(ws.recv(timeout=TIMEOUT))
    return data


def send(ws: ClientConnection, **payload: Any) -> None:
    ws.send(orjson.dumps(payload).decode())


def respond(ws: ClientConnection, **options: Any) -> list[dict[str, Any]]:
    """Ask for a text response; its events up to `response.done`."""
    send(ws, type="response.create", response={"modalities": ["text"], **options})
    events = [receive(ws)]
    while events[-1]["type"] != "response.done":
        events.append(receive(ws))
    return events


def calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "response.function_call_arguments.done"]


def text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.text.delta")


def test_a_realtime_function_call_follows_the_tools_schema(voice: ClientConnection) -> None:
    send(voice, type="session.update", session={"tools": [WEATHER_TOOL, TIME_TOOL]})
    assert receive(voice)["type"] == "session.updated"
    [call] = calls(respond(voice))
    assert call["name"] == "get_weather"
    jsonschema.validate(orjson.loads(call["arguments"]), WEATHER)
    forced = {"type": "function", "name": "get_time"}
    [call] = calls(respond(voice, tool_choice=forced))
    assert call["name"] == "get_time"
    assert calls(respond(voice, tool_choice="none")) == []


def test_a_realtime_function_output_is_answered_without_calling_again(
    voice: ClientConnection,
) -> None:
    send(voice, type="session.update", session={"tools": [WEATHER_TOOL]})
    assert receive(voice)["type"] == "session.updated"
    [call] = calls(respond(voice))
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    send(voice, type="conversation.item.create", item=output)
    assert receive(voice)["type"] == "conversation.item.added"
    answer = respond(voice)
    assert calls(answer) == []
    assert text(answer) == "The tool returned: sunny"


@pytest.fixture
def claude(live: Proxy) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{live.url}/api", api_key=KEY, max_retries=0) as sdk:
        yield sdk


THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


def test_anthropic_thinking_yields_a_thinking_block_before_the_answer(
    claude: anthropic.Anthropic,
) -> None:
    ask: Any = {"role": "user", "content": "Hello"}
    message = claude.messages.create(
        model="grok-4.3", max_tokens=2048, messages=[ask], thinking=THINKING
    )
    thinking, answer = message.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert answer.type == "text" and answer.text
    without = claude.messages.create(model="grok-4.3", max_tokens=2048, messages=[ask])
    assert [block.type for block in without.content] == ["text"]
    assert message.usage.output_tokens > without.usage.output_tokens


def test_anthropic_streamed_thinking_matches_the_plain_answer(
    claude: anthropic.Anthropic,
) -> None:
    ask: Any = {"role": "user", "content": "Hello"}
    plain = claude.messages.create(
        model="grok-4.3", max_tokens=2048, messages=[ask], thinking=THINKING
    )
    with claude.messages.stream(
        model="grok-4.3", max_tokens=2048, messages=[ask], thinking=THINKING
    ) as stream:
        thought = "".join(e.thinking for e in stream if e.type == "thinking")
        streamed = stream.get_final_message()
    assert thought == plain.content[0].thinking  # type: ignore[union-attr]
    assert [block.model_dump() for block in streamed.content] == [
        block.model_dump() for block in plain.content
    ]
