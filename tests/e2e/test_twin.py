"""The simulator as an offline twin of xAI: real clients' helpers pass through the real proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

AUTH = {"authorization": f"Bearer {KEY}"}
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "format": "uuid"}},
            "required": ["zone"],
        },
    },
}


@pytest.fixture
def oai(live: Proxy, fresh_sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.api, api_key=KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def claude(live: Proxy, fresh_sim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{live.url}/api", api_key=KEY, max_retries=0) as sdk:
        yield sdk


# structured output


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    zip_code: int


class Person(BaseModel):
    name: str
    age: int
    favourite: Colour
    home: Address
    past_homes: list[Address]
    nickname: str | None


def test_chat_parse_with_a_pydantic_model(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.parse(
        model="grok-4.3",
        messages=[{"role": "user", "content": "Describe a person."}],
        response_format=Person,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert person.favourite is Colour.RED
    assert person.past_homes and isinstance(person.past_homes[0], Address)


def test_json_object_is_a_json_object(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="grok-4",
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_streamed_structured_output_joins_to_the_instance(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="grok-4.3@chunks=7",
        messages=[{"role": "user", "content": "Describe a person."}],
        response_format=Person,
    ) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)


# tools


def test_tool_call_then_answer_with_the_result(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai.chat.completions.create(
        model="grok-4", messages=messages, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    arguments = json.loads(calls[0].function.arguments)
    assert arguments["unit"] in {"celsius", "fahrenheit"} and 1 <= arguments["days"] <= 7
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 degrees and sunny"},
    ]
    second = oai.chat.completions.create(model="grok-4", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "18 degrees and sunny" in (second.choices[0].message.content or "")


def test_forced_tool_choice_and_none(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "What time is it?"}]
    forced = oai.chat.completions.create(
        model="grok-4",
        messages=messages,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    call = (forced.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_time"
    assert json.loads(call.function.arguments)["zone"].count("-") == 4  # a uuid
    plain = oai.chat.completions.create(
        model="grok-4",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert plain.choices[0].message.tool_calls is None
    assert (plain.choices[0].message.content or "").startswith("Hello!")


def test_streamed_tool_call_comes_whole_in_one_chunk(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="grok-4",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    with_calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(with_calls) == 1
    call = (with_calls[0].choices[0].delta.tool_calls or [])[0]
    assert call.index == 0 and call.id and call.function and call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "")["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The SDK's stream helper assembles the call the same way.
    with oai.chat.completions.stream(
        model="grok-4",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[openai.pydantic_function_tool(Address, name="lookup")],
    ) as helper:
        final = helper.get_final_completion()
    parsed = (final.choices[0].message.tool_calls or [])[0].function.parsed_arguments
    assert isinstance(parsed, Address)


# reasoning


def test_reasoning_model_reports_its_reasoning(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="grok-4.3", messages=[{"role": "user", "content": "Think."}]
    )
    message = completion.choices[0].message.model_dump()
    assert message["reasoning_content"]
    assert completion.usage is not None and completion.usage.completion_tokens_details
    assert (completion.usage.completion_tokens_details.reasoning_tokens or 0) > 0
    stream = oai.chat.completions.create(
        model="grok-4.7", messages=[{"role": "user", "content": "Think."}], stream=True
    )
    deltas = [c.choices[0].delta.model_dump() for c in stream if c.choices]
    thought = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert thought == message["reasoning_content"]


# the Responses API


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="grok-4.3", input="Hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text.startswith("Hello!")
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.reasoning_summary_text.delta",
    ):
        assert kind in kinds, kind
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0
    assert final.output[0].type == "reasoning"


def test_responses_events_carry_ids_indexes_and_sequence(live: Proxy, fresh_sim: Simulator) -> None:
    body = {"model": "grok-4", "input": "Hi", "stream": True}
    with httpx.stream("POST", f"{live.api}/responses", json=body, headers=AUTH) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [orjson.loads(line[6:]) for line in lines]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas and all({"item_id", "output_index", "content_index"} <= set(e) for e in deltas)


def test_responses_function_call_then_output_via_previous_response(oai: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER_TOOL["function"]["parameters"],
        "strict": True,
    }
    first = oai.responses.create(model="grok-4", input="Weather?", tools=[tool])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments)["unit"] == "celsius"
    second = oai.responses.create(
        model="grok-4",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
        tools=[tool],
    )
    assert "rainy" in second.output_text
    assert oai.responses.retrieve(second.id).output_text == second.output_text
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="grok-4", previous_response_id="resp_nope", input="Hi")


def test_responses_streamed_function_call(oai: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "name": "lookup", "parameters": Address.model_json_schema()}
    with oai.responses.stream(model="grok-4", input="Find it", tools=[tool]) as stream:
        final = stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call"
    Address.model_validate_json(call.arguments)


def test_responses_parse_and_store_false(oai: openai.OpenAI) -> None:
    parsed = oai.responses.parse(model="grok-4", input="A person", text_format=Person, store=False)
    assert isinstance(parsed.output_parsed, Person)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(parsed.id)


# Anthropic Messages


def test_anthropic_tool_use_then_result(claude: anthropic.Anthropic) -> None:
    tools: Any = [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    messages: Any = [{"role": "user", "content": "Weather?"}]
    first = claude.messages.create(
        model="grok-4",
        max_tokens=100,
        messages=messages,
        tools=tools,
    )
    assert first.stop_reason == "tool_use"
    block = first.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert isinstance(block.input, dict) and block.input["unit"] == "celsius"
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "windy"}],
        },
    ]
    second = claude.messages.create(
        model="grok-4",
        max_tokens=100,
        messages=messages,
        tools=tools,
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and "windy" in second.content[0].text
    with claude.messages.stream(
        model="grok-4",
        max_tokens=100,
        messages=messages[:1],
        tools=tools,
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == block.input


def test_anthropic_document_block_and_server_tool(claude: anthropic.Anthropic) -> None:
    document: Any = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
        "title": "Facts",
    }
    answer = claude.messages.create(
        model="grok-4",
        max_tokens=100,
        messages=[{"role": "user", "content": [document, {"type": "text", "text": "Summarize."}]}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
    )
    assert answer.content[0].type == "text" and answer.content[0].text.startswith("Hello!")


def test_anthropic_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(
        model="grok-4", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert counted.input_tokens > 0


def test_anthropic_style_paths_answer_in_anthropic_envelope(live: Proxy) -> None:
    response = httpx.post(
        f"{live.api}/messages/count_tokens", json={"messages": []}, headers={"x-api-key": KEY}
    )
    assert response.json()["type"] == "error"
    missing_key = httpx.post(f"{live.api}/messages/count_tokens", json={})
    assert missing_key.status_code == 401 and missing_key.json()["type"] == "error"


# strict like xAI


def test_base_url_mistake_is_a_404_as_at_xai(live: Proxy, fresh_sim: Simulator) -> None:
    wrong = anthropic.Anthropic(base_url=live.api, api_key=KEY, max_retries=0)
    with wrong, pytest.raises(anthropic.NotFoundError):
        wrong.messages.create(
            model="grok-4", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert fresh_sim.last_request()["path"] == "/v1/v1/messages"


def test_retired_model_invalid_key_and_live_search(oai: openai.OpenAI, live: Proxy) -> None:
    hello: Any = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.NotFoundError) as retired:
        oai.chat.completions.create(model="grok-3", messages=hello)
    assert "grok-3 does not exist" in retired.value.message
    bad = openai.OpenAI(base_url=live.api, api_key="xai-invalid-key", max_retries=0)
    with bad, pytest.raises(openai.BadRequestError) as refused:
        bad.chat.completions.create(model="grok-4", messages=hello)
    assert "Incorrect API key provided" in refused.value.message
    gone = httpx.post(
        f"{live.api}/chat/completions",
        json={"model": "grok-4", "messages": hello, "search_parameters": {"mode": "auto"}},
        headers=AUTH,
    )
    assert gone.status_code == 410


# the rest of the REST surface


def test_files_round_trip(oai: openai.OpenAI) -> None:
    uploaded = oai.files.create(file=("notes.txt", b"hello twin"), purpose="assistants")
    assert uploaded.bytes == len(b"hello twin") and uploaded.filename == "notes.txt"
    assert uploaded.id in [f.id for f in oai.files.list()]
    assert oai.files.retrieve(uploaded.id).filename == "notes.txt"
    assert oai.files.content(uploaded.id).read() == b"hello twin"
    assert oai.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)


def test_files_over_50_mb_are_413(sim: Simulator) -> None:
    big = b"x" * (50 * 1000 * 1000 + 1)
    response = httpx.post(
        f"{sim.base_url}/files", files={"file": ("big.bin", big)}, headers=AUTH, timeout=30
    )
    assert response.status_code == 413


def test_image_edit_and_video_round_trip(live: Proxy, fresh_sim: Simulator) -> None:
    edit = httpx.post(
        f"{live.api}/images/edits",
        json={
            "model": "grok-imagine-image",
            "prompt": "Make it blue",
            "image": {"url": "https://example.com/a.jpg", "type": "image_url"},
        },
        headers=AUTH,
    )
    assert edit.status_code == 200 and edit.json()["data"][0]["url"].startswith("https://")
    started = httpx.post(
        f"{live.api}/videos/generations",
        json={"model": "grok-imagine-video", "prompt": "A wave", "duration": 5},
        headers=AUTH,
    )
    request_id = started.json()["request_id"]
    first = httpx.get(f"{live.api}/videos/{request_id}", headers=AUTH)
    assert first.status_code == 202
    done = httpx.get(f"{live.api}/videos/{request_id}", headers=AUTH)
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert done.json()["video"]["url"].endswith(".mp4")


def test_batch_round_trip(live: Proxy, fresh_sim: Simulator) -> None:
    created = httpx.post(f"{live.api}/batches", json={"name": "nightly"}, headers=AUTH).json()
    batch_id = created["batch_id"]
    chat = {"model": "grok-4", "messages": [{"role": "user", "content": "Hi"}]}
    added = httpx.post(
        f"{live.api}/batches/{batch_id}/requests",
        json={
            "batch_requests": [
                {"batch_request_id": "r1", "batch_request": {"chat_get_completion": chat}}
            ]
        },
        headers=AUTH,
    )
    assert added.status_code == 200
    state = httpx.get(f"{live.api}/batches/{batch_id}", headers=AUTH).json()["state"]
    assert state["num_success"] == 1
    results = httpx.get(f"{live.api}/batches/{batch_id}/results", headers=AUTH).json()["results"]
    assert results[0]["batch_request_id"] == "r1"


def test_catalogue_names_current_models(live: Proxy) -> None:
    language = httpx.get(f"{live.api}/language-models", headers=AUTH).json()["models"]
    assert {"grok-4.7", "grok-4.3", "grok-4.20-0309-reasoning"} <= {m["id"] for m in language}
    images = httpx.get(f"{live.api}/image-generation-models", headers=AUTH).json()["models"]
    assert "grok-imagine-image" in {m["id"] for m in images}
    assert httpx.get(f"{live.api}/api-key", headers=AUTH).json()["acls"]


# what reaches xAI


def test_cache_affinity_reaches_xai(oai: openai.OpenAI, fresh_sim: Simulator) -> None:
    oai.chat.completions.create(
        model="grok-4",
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-grok-conv-id": "conv-42"},
    )
    assert fresh_sim.last_request()["headers"]["x-grok-conv-id"] == "conv-42"
    oai.responses.create(model="grok-4", input="Hi", prompt_cache_key="conv-42")
    assert orjson.loads(fresh_sim.last_request()["body"])["prompt_cache_key"] == "conv-42"


def test_unknown_content_part_and_tool_choice_kinds_reach_xai(
    live: Proxy, fresh_sim: Simulator
) -> None:
    body = {
        "model": "grok-4",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Listen"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
    }
    response = httpx.post(f"{live.api}/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    assert orjson.loads(fresh_sim.last_request()["body"]) == body
