"""The twin's gRPC side, level with its HTTP side, driven by xAI's SDK through the real proxy.

What users of `xai-sdk` and pydantic-ai's `XaiModel` write in their own offline tests:
structured output, tool calls and their results, reasoning, images as bytes, the model
lists, deferred completions, and usage with its cost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import closing

import grpc
import jsonschema
import pytest
from pydantic import BaseModel
from xai_sdk import Client
from xai_sdk.chat import tool, tool_result, user
from xai_sdk.proto.v6 import chat_pb2, chat_pb2_grpc, deferred_pb2
from xai_sdk.tools import web_search

from grok_proxy.simulator import catalog
from tests.conftest import KEY
from tests.processes import Proxy, Simulator

REPLY = "Hello! This is the grok-proxy simulator standing in for xAI."
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}


class Address(BaseModel):
    street: str
    zip_code: str


class City(BaseModel):
    name: str
    population: int
    districts: list[str]
    address: Address


@pytest.fixture
def client(live: Proxy, fresh_sim: Simulator) -> Iterator[Client]:
    with closing(
        Client(api_key=KEY, api_host=live.grpc_target, use_insecure_channel=True, timeout=20)
    ) as sdk:
        yield sdk


def test_chat_parse_returns_an_instance_of_the_model(client: Client) -> None:
    chat = client.chat.create(model="grok-4.3", messages=[user("Describe a city.")])
    response, city = chat.parse(City)
    assert isinstance(city, City) and city.districts and city.address.zip_code
    assert json.loads(response.content) == city.model_dump()


def test_a_tool_call_follows_the_schema_then_the_result_is_answered(client: Client) -> None:
    weather = tool("get_weather", "The weather in a city.", WEATHER)
    chat = client.chat.create(model="grok-4.3", messages=[user("Weather?")], tools=[weather])
    asked = chat.sample()
    assert asked.finish_reason == "REASON_TOOL_CALLS"
    [call] = asked.tool_calls
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    chat.append(asked)
    chat.append(tool_result("sunny, 21 degrees", tool_call_id=call.id))
    answered = chat.sample()
    assert "sunny, 21 degrees" in answered.content
    assert not answered.tool_calls


def test_a_streamed_tool_call_arrives_whole(client: Client) -> None:
    weather = tool("get_weather", "The weather in a city.", WEATHER)
    chat = client.chat.create(model="grok-4.3", messages=[user("Weather?")], tools=[weather])
    calls = [call for _, chunk in chat.stream() for call in chunk.tool_calls]
    assert [call.function.name for call in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER)


def test_tool_choice_none_answers_in_text(client: Client) -> None:
    weather = tool("get_weather", "The weather in a city.", WEATHER)
    chat = client.chat.create(
        model="grok-4",
        messages=[user("Hi")],
        tools=[weather],
        tool_choice="none",
    )
    answer = chat.sample()
    assert answer.content == REPLY and not answer.tool_calls


def test_a_reasoning_model_returns_its_reasoning_plain_and_streamed(client: Client) -> None:
    answer = client.chat.create(model="grok-4.3", messages=[user("Hi")]).sample()
    assert answer.reasoning_content and answer.content == REPLY
    assert answer.usage.reasoning_tokens > 0
    chat = client.chat.create(model="grok-4.3", messages=[user("Hi")])
    thought = "".join(chunk.reasoning_content for _, chunk in chat.stream())
    assert thought == answer.reasoning_content
    plain = client.chat.create(model="grok-4", messages=[user("Hi")]).sample()
    assert plain.reasoning_content == "" and plain.usage.reasoning_tokens == 0


def test_usage_carries_the_cost_and_the_server_side_tools_used(client: Client) -> None:
    chat = client.chat.create(model="grok-4", messages=[user("Hi")])
    tokens_only = chat.sample().usage
    expected = catalog.token_cost(tokens_only.prompt_tokens, tokens_only.completion_tokens)
    assert tokens_only.cost_in_usd_ticks == expected > 0
    searching = client.chat.create(model="grok-4", messages=[user("Hi")], tools=[web_search()])
    answer = searching.sample()
    assert answer.server_side_tool_usage == {"SERVER_SIDE_TOOL_WEB_SEARCH": 1}
    tool_cost = answer.usage.cost_in_usd_ticks - catalog.token_cost(
        answer.usage.prompt_tokens, answer.usage.completion_tokens
    )
    assert tool_cost == catalog.SERVER_SIDE_TOOL_TICKS
    priced = client.chat.create(model="grok-4@cost=12345", messages=[user("Hi")])
    *_, (final, _) = priced.stream()
    assert final.usage.cost_in_usd_ticks == 12345


def test_image_bytes_from_a_base64_answer(client: Client) -> None:
    image = client.image.sample("a cat", model="grok-imagine-image", image_format="base64")
    assert image.base64.startswith("data:image/jpeg;base64,")
    assert image.image.startswith(b"\xff\xd8")  # a JPEG


def test_image_and_embedding_model_lists(client: Client) -> None:
    images = [model.name for model in client.models.list_image_generation_models()]
    assert "grok-imagine-image" in images
    one = client.models.get_image_generation_model("grok-imagine-image")
    assert one.name == "grok-imagine-image" and one.image_price > 0
    assert [model.name for model in client.models.list_embedding_models()] == ["v1"]
    assert client.models.get_embedding_model("v1").name == "v1"
    with pytest.raises(grpc.RpcError) as missing:
        client.models.get_image_generation_model("grok-4.3")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_deferred_completion_is_polled_to_its_answer(client: Client, sim: Simulator) -> None:
    answer = client.chat.create(model="grok-4", messages=[user("Hi")]).defer()
    assert answer.content == REPLY
    methods = [request["path"] for request in sim.requests()]
    assert methods[-2:] == [
        "/xai_api.Chat/StartDeferredCompletion",
        "/xai_api.Chat/GetDeferredCompletion",
    ]


def test_a_deferred_answer_is_pending_then_served_once(live: Proxy) -> None:
    auth = [("authorization", f"Bearer {KEY}")]
    with grpc.insecure_channel(live.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)

        def start(model: str) -> str:
            request = chat_pb2.GetCompletionsRequest(model=model, messages=[user("Hi")])
            started = stub.StartDeferredCompletion(request, metadata=auth, timeout=20)
            return str(started.request_id)

        def fetch(request_id: str) -> chat_pb2.GetDeferredCompletionResponse:
            request = deferred_pb2.GetDeferredRequest(request_id=request_id)
            return stub.GetDeferredCompletion(request, metadata=auth, timeout=20)

        waiting = start("grok-4@pending")
        assert fetch(waiting).status == deferred_pb2.PENDING
        done = start("grok-4")
        answer = fetch(done)
        assert answer.status == deferred_pb2.DONE
        assert answer.response.outputs[0].message.content == REPLY
        with pytest.raises(grpc.RpcError) as again:
            fetch(done)
    assert again.value.code() == grpc.StatusCode.NOT_FOUND


def test_pydantic_ai_xai_model_with_an_output_type(live: Proxy) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.xai import XaiModel
    from pydantic_ai.providers.xai import XaiProvider
    from xai_sdk import AsyncClient

    async def ask() -> City:
        # Built inside the loop that runs it: a grpc.aio channel belongs to its loop.
        client = AsyncClient(api_key=KEY, api_host=live.grpc_target, use_insecure_channel=True)
        model = XaiModel("grok-4.3", provider=XaiProvider(xai_client=client))
        return (await Agent(model, output_type=City).run("Describe a city.")).output

    city = asyncio.run(ask())
    assert isinstance(city, City) and city.address.street
