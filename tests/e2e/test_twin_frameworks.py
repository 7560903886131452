"""Agent and structured-output frameworks work offline through the proxy and the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.conftest import KEY
from tests.processes import Proxy


class City(BaseModel):
    name: str
    population: int
    districts: list[str]


@tool
def get_weather(city: str, days: int) -> str:
    """The weather in a city for the next days."""
    return f"sunny in {city} for {days} days"


@pytest.fixture
def chat(live: Proxy) -> Iterator[ChatOpenAI]:
    # Our own HTTP client: LangChain's default one is shared and never closed.
    with httpx.Client() as http:
        yield ChatOpenAI(
            model="grok-4.3", base_url=live.api, api_key=KEY, max_retries=0, http_client=http
        )


def test_langchain_structured_output(chat: ChatOpenAI) -> None:
    city = chat.with_structured_output(City).invoke("Describe a city.")
    assert isinstance(city, City) and city.districts


def test_langchain_bind_tools_and_tool_result(chat: ChatOpenAI) -> None:
    with_tools = chat.bind_tools([get_weather])
    question = HumanMessage("Weather in Rome?")
    asked = with_tools.invoke([question])
    assert asked.tool_calls and asked.tool_calls[0]["name"] == "get_weather"
    call = asked.tool_calls[0]
    result = get_weather.invoke(call["args"])
    answer = with_tools.invoke([question, asked, ToolMessage(result, tool_call_id=call["id"])])
    assert result in str(answer.content)


def test_pydantic_ai_output_type(live: Proxy) -> None:
    async def ask() -> City:
        # Our own client, so its sockets are closed when the test ends.
        async with openai.AsyncOpenAI(base_url=live.api, api_key=KEY, max_retries=0) as client:
            model = OpenAIChatModel("grok-4.3", provider=OpenAIProvider(openai_client=client))
            result = await Agent(model, output_type=City).run("Describe a city.")
            return result.output

    assert isinstance(asyncio.run(ask()), City)
