"""The twin answers every operation of xAI's published API with a body its 200 schema accepts.

The schemas come from the document itself (`xai-openapi.json`, OpenAPI 3.1, whose schemas are
JSON Schema Draft 2020-12), resolved with its own `$ref`s: a twin answer missing a property xAI
marks required, or with a wrong type, fails here the way it would fail a strict client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import KEY
from tests.processes import Simulator

# xAI's document as published (https://docs.x.ai/openapi.json, August 2026 copy).
SPEC_PATH = (
    Path(__file__).resolve().parents[2] / "src" / "grok_proxy" / "schemas" / "xai-openapi.json"
)
SPEC_URI = "urn:xai-openapi"

USER = [{"role": "user", "content": "Hello"}]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
}
CITY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}

Call = Callable[[httpx.Client], httpx.Response]


SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())


def as_validated(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with its one ambiguity fixed as its own words fix it.

    `ModelOutput` is a `oneOf` whose `CustomToolCall` branch does not pin its `type`, so every
    `function_call` item with an `id` (as xAI sends them) matches two branches and fails. Its
    description says the type is `custom_tool_call`: that is the constraint added here.
    """
    fixed: dict[str, Any] = json.loads(json.dumps(spec))
    custom = fixed["components"]["schemas"]["CustomToolCall"]
    custom["properties"]["type"] = {"type": "string", "const": "custom_tool_call"}
    return fixed


REGISTRY: Registry[Any] = Registry().with_resource(
    SPEC_URI, Resource.from_contents(as_validated(SPEC), default_specification=DRAFT202012)
)


def validator(ref: str) -> jsonschema.Draft202012Validator:
    """A Draft 2020-12 validator for one schema of the document, its `$ref`s resolved."""
    return jsonschema.Draft202012Validator(
        {"$ref": f"{SPEC_URI}{ref}"},
        registry=REGISTRY,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def component(name: str) -> jsonschema.Draft202012Validator:
    return validator(f"#/components/schemas/{name}")


def ok_schema(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The content type and schema of an operation's 200 answer, as the document gives them."""
    content = SPEC["paths"][path][method]["responses"]["200"]["content"]
    media_type, entry = next(iter(content.items()))
    return media_type, entry["schema"]


def errors(check: jsonschema.Draft202012Validator, instance: Any) -> list[str]:
    """Every violation, with where it is: the whole list reads better than the first failure."""
    return [describe(leaf) for error in check.iter_errors(instance) for leaf in leaves(error)]


def leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The innermost errors; a nullable property's `null` branch says nothing useful."""
    if not error.context:
        return [error]
    inner = [leaf for sub in error.context for leaf in leaves(sub)]
    useful = [leaf for leaf in inner if leaf.validator != "type" or leaf.validator_value != "null"]
    return useful or [error]


def describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


# Objects some operations need first; each helper makes a fresh one.
def upload(client: httpx.Client) -> str:
    files = {"file": ("notes.txt", b"hello twin", "text/plain")}
    answer = client.post("/v1/files", files=files, data={"purpose": "assistants"})
    file_id: str = answer.raise_for_status().json()["id"]
    return file_id


def stored_response(client: httpx.Client) -> str:
    answer = client.post("/v1/responses", json={"model": "grok-4.3", "input": "Hello"})
    response_id: str = answer.raise_for_status().json()["id"]
    return response_id


def deferred_chat(client: httpx.Client) -> str:
    body = {"model": "grok-4.3", "messages": USER, "deferred": True}
    request_id: str = (
        client.post("/v1/chat/completions", json=body).raise_for_status().json()["request_id"]
    )
    return request_id


def finished_video(client: httpx.Client) -> httpx.Response:
    started = client.post("/v1/videos/generations", json={"prompt": "a cat", "duration": 3})
    request_id = started.raise_for_status().json()["request_id"]
    pending = client.get(f"/v1/videos/{request_id}")
    assert pending.status_code == 202
    return client.get(f"/v1/videos/{request_id}")


def post(path: str, body: dict[str, Any]) -> Call:
    return lambda client: client.post(path, json=body)


def get(path: str) -> Call:
    return lambda client: client.get(path)


# One request per operation of the document (more for the main ones: what varies in the
# answer's shape, tools, reasoning, structured output, varies the request).
OPERATIONS: dict[tuple[str, str], list[Call]] = {
    ("get", "/v1/api-key"): [get("/v1/api-key")],
    ("post", "/v1/chat/completions"): [
        post("/v1/chat/completions", {"model": "grok-4.3", "messages": USER}),
        post("/v1/chat/completions", {"model": "grok-4", "messages": USER}),
        post(
            "/v1/chat/completions",
            {
                "model": "grok-4.3",
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "w", "parameters": WEATHER}}],
            },
        ),
        post(
            "/v1/chat/completions",
            {
                "model": "grok-4.20-non-reasoning",
                "messages": USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "city", "schema": CITY},
                },
            },
        ),
    ],
    ("get", "/v1/chat/deferred-completion/{request_id}"): [
        lambda client: client.get(f"/v1/chat/deferred-completion/{deferred_chat(client)}")
    ],
    ("post", "/v1/complete"): [
        post(
            "/v1/complete",
            {"model": "grok-4", "max_tokens_to_sample": 8, "prompt": "\n\nHuman: Hi\n\nAssistant:"},
        )
    ],
    ("post", "/v1/completions"): [post("/v1/completions", {"model": "grok-4", "prompt": "Hi"})],
    ("post", "/v1/documents/search"): [
        post(
            "/v1/documents/search",
            {"query": "revenue last quarter", "source": {"collection_ids": ["collection_1"]}},
        )
    ],
    ("get", "/v1/embedding-models"): [get("/v1/embedding-models")],
    ("get", "/v1/embedding-models/{model_id}"): [get("/v1/embedding-models/v1")],
    ("post", "/v1/embeddings"): [
        post("/v1/embeddings", {"model": "v1", "input": ["a", "b"]}),
        post("/v1/embeddings", {"model": "v1", "input": "a", "encoding_format": "base64"}),
    ],
    ("get", "/v1/files"): [lambda client: (upload(client), client.get("/v1/files"))[1]],
    ("post", "/v1/files"): [
        lambda client: client.post("/v1/files", files={"file": ("a.txt", b"abc", "text/plain")})
    ],
    ("get", "/v1/files/{file_id}"): [lambda client: client.get(f"/v1/files/{upload(client)}")],
    ("delete", "/v1/files/{file_id}"): [
        lambda client: client.delete(f"/v1/files/{upload(client)}")
    ],
    ("get", "/v1/files/{file_id}/content"): [
        lambda client: client.get(f"/v1/files/{upload(client)}/content")
    ],
    ("get", "/v1/image-generation-models"): [get("/v1/image-generation-models")],
    ("get", "/v1/image-generation-models/{model_id}"): [
        get("/v1/image-generation-models/grok-imagine-image")
    ],
    ("post", "/v1/images/edits"): [
        post(
            "/v1/images/edits",
            {
                "model": "grok-imagine-image",
                "prompt": "Add a hat",
                "image": {"url": "https://example.com/cat.jpg"},
            },
        )
    ],
    ("post", "/v1/images/generations"): [
        post("/v1/images/generations", {"model": "grok-imagine-image", "prompt": "a cat"}),
        post(
            "/v1/images/generations",
            {"prompt": "two cats", "n": 2, "response_format": "b64_json"},
        ),
    ],
    ("get", "/v1/language-models"): [get("/v1/language-models")],
    ("get", "/v1/language-models/{model_id}"): [get("/v1/language-models/grok-4.3")],
    ("post", "/v1/messages"): [
        post("/v1/messages", {"model": "grok-4.3", "max_tokens": 64, "messages": USER}),
        post(
            "/v1/messages",
            {
                "model": "grok-4.3",
                "max_tokens": 64,
                "messages": USER,
                "tools": [{"name": "w", "input_schema": WEATHER}],
            },
        ),
        post(
            "/v1/messages",
            {
                "model": "grok-4.3",
                "max_tokens": 2048,
                "messages": USER,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
        ),
    ],
    ("get", "/v1/models"): [get("/v1/models")],
    ("get", "/v1/models/{model_id}"): [get("/v1/models/grok-4.3")],
    ("post", "/v1/responses"): [
        post("/v1/responses", {"model": "grok-4.3", "input": "Hello"}),
        post("/v1/responses", {"model": "grok-4", "input": "Hello", "store": False}),
        post(
            "/v1/responses",
            {
                "model": "grok-4.3",
                "input": "Hello",
                "tools": [{"type": "function", "name": "w", "parameters": WEATHER}],
            },
        ),
        post(
            "/v1/responses",
            {
                "model": "grok-4.3",
                "input": "Hello",
                "text": {"format": {"type": "json_schema", "name": "city", "schema": CITY}},
            },
        ),
        post(
            "/v1/responses",
            {"model": "grok-4.3", "input": "News today?", "tools": [{"type": "web_search"}]},
        ),
    ],
    ("get", "/v1/responses/{response_id}"): [
        lambda client: client.get(f"/v1/responses/{stored_response(client)}")
    ],
    ("delete", "/v1/responses/{response_id}"): [
        lambda client: client.delete(f"/v1/responses/{stored_response(client)}")
    ],
    ("post", "/v1/tokenize-text"): [
        post("/v1/tokenize-text", {"model": "grok-4.3", "text": "hello world"})
    ],
    ("get", "/v1/video-generation-models"): [get("/v1/video-generation-models")],
    ("get", "/v1/video-generation-models/{model_id}"): [
        get("/v1/video-generation-models/grok-imagine-video")
    ],
    ("post", "/v1/videos/edits"): [
        post(
            "/v1/videos/edits",
            {"prompt": "make it rain", "video": {"url": "https://example.com/v.mp4"}},
        )
    ],
    ("post", "/v1/videos/extensions"): [
        post(
            "/v1/videos/extensions",
            {"prompt": "and then", "video": {"url": "https://example.com/v.mp4"}},
        )
    ],
    ("post", "/v1/videos/generations"): [
        post("/v1/videos/generations", {"prompt": "a cat", "model": "grok-imagine-video"})
    ],
    ("get", "/v1/videos/{request_id}"): [finished_video],
}

CASES = [
    pytest.param(method, path, call, id=f"{method.upper()} {path} #{index}")
    for (method, path), calls in OPERATIONS.items()
    for index, call in enumerate(calls)
]


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=sim.url, headers=headers, timeout=20) as http:
        yield http


def test_every_operation_of_the_document_has_a_case() -> None:
    documented = {
        (method, path)
        for path, operations in SPEC["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert len(documented) == 33
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "call"), CASES)
def test_the_answer_validates_against_the_200_schema(
    client: httpx.Client, method: str, path: str, call: Call
) -> None:
    answer = call(client)
    assert answer.status_code == 200, answer.text
    media_type, schema = ok_schema(method, path)
    assert answer.headers["content-type"].startswith(media_type)
    if media_type != "application/json":
        assert schema == {"type": "string"} and answer.content  # raw bytes
        return
    assert errors(validator(schema["$ref"]), answer.json()) == []


def chat_stream(client: httpx.Client, body: dict[str, Any]) -> list[Any]:
    payloads = []
    with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                payloads.append(json.loads(line[6:]))
    return payloads


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"tools": [{"type": "function", "function": {"name": "w", "parameters": WEATHER}}]},
    ],
    ids=["text", "tool call"],
)
def test_every_streamed_chat_chunk_validates_and_the_last_carries_the_cost(
    client: httpx.Client, extra: dict[str, Any]
) -> None:
    body = {
        "model": "grok-4.3",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    chunks = chat_stream(client, body)
    check = component("ChatResponseChunk")
    assert [errors(check, chunk) for chunk in chunks] == [[] for _ in chunks]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["cost_in_usd_ticks"] > 0


def named_events(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    with client.stream("POST", path, json=body) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_the_streamed_responses_completed_event_validates_and_carries_the_cost(
    client: httpx.Client,
) -> None:
    events = named_events(
        client, "/v1/responses", {"model": "grok-4.3", "input": "Hello", "stream": True}
    )
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert errors(component("ModelResponse"), completed["response"]) == []
    assert completed["response"]["usage"]["cost_in_usd_ticks"] > 0


def test_the_streamed_anthropic_message_delta_carries_the_cost(client: httpx.Client) -> None:
    body = {"model": "grok-4.3", "max_tokens": 64, "messages": USER, "stream": True}
    events = named_events(client, "/v1/messages", body)
    delta = next(event for event in events if event["type"] == "message_delta")
    plain = client.post("/v1/messages", json={**body, "stream": False}).json()
    assert delta["usage"]["cost_in_usd_ticks"] == plain["usage"]["cost_in_usd_ticks"] > 0


def test_cost_is_the_published_price_of_the_tokens_unless_a_directive_sets_it(
    client: httpx.Client,
) -> None:
    prices = client.get("/v1/language-models/grok-4.3").json()
    body = {"model": "grok-4.3@cached=3", "messages": USER}
    usage = client.post("/v1/chat/completions", json=body).json()["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert cached == 3 and reasoning > 0
    assert usage["cost_in_usd_ticks"] == (
        (usage["prompt_tokens"] - cached) * prices["prompt_text_token_price"]
        + cached * prices["cached_prompt_text_token_price"]
        + (usage["completion_tokens"] + reasoning) * prices["completion_text_token_price"]
    )
    body = {"model": "grok-4.3@cost=987654321", "messages": USER}
    assert client.post("/v1/chat/completions", json=body).json()["usage"] == {
        **usage,
        "prompt_tokens_details": {**usage["prompt_tokens_details"], "cached_tokens": 0},
        "cost_in_usd_ticks": 987654321,
    }


def test_a_server_side_tool_is_counted_and_billed(client: httpx.Client) -> None:
    plain = client.post("/v1/responses", json={"model": "grok-4", "input": "News?"}).json()
    body = {"model": "grok-4", "input": "News?", "tools": [{"type": "web_search"}]}
    searched = client.post("/v1/responses", json=body).json()
    assert searched["usage"]["num_server_side_tools_used"] == 1
    assert searched["usage"]["server_side_tool_usage_details"]["web_search_calls"] == 1
    assert searched["output"][0]["type"] == "web_search_call"
    extra = searched["usage"]["cost_in_usd_ticks"] - plain["usage"]["cost_in_usd_ticks"]
    assert extra == 50_000_000  # $5 per 1,000 calls
