"""The rest of the API end to end, through the OpenAI and Anthropic SDKs and raw HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

AUTH = {"authorization": f"Bearer {KEY}"}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def oai(live: Proxy, fresh_sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.api, api_key=KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def claude(live: Proxy, fresh_sim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{live.url}/api", api_key=KEY, max_retries=0) as sdk:
        yield sdk


def sent(sim: Simulator) -> dict[str, object]:
    request = sim.last_request()
    body = orjson.loads(request["body"]) if request["body"] else None
    return {**request, "json": body}


# images


def test_images_url(oai: openai.OpenAI, fresh_sim: Simulator) -> None:
    result = oai.images.generate(prompt="A cat in a tree", n=2)
    assert result.data is not None and len(result.data) == 2
    assert result.data[0].url is not None and result.data[0].url.startswith("https://")
    assert result.data[0].revised_prompt == "A detailed rendering of: A cat in a tree"
    assert result.created > 0
    request = sent(fresh_sim)
    assert request["path"] == "/v1/images/generations"
    # /images/generations mirrors xAI: no model is filled in; xAI (here the twin) picks it.
    assert request["json"] == {"prompt": "A cat in a tree", "n": 2}


def test_images_b64_body_as_sent(oai: openai.OpenAI, fresh_sim: Simulator) -> None:
    result = oai.images.generate(
        prompt="A lighthouse", response_format="b64_json", model="grok-imagine-image-quality"
    )
    assert result.data is not None and result.data[0].b64_json is not None
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\xff\xd8\xff")  # JPEG
    assert sent(fresh_sim)["json"] == {
        "prompt": "A lighthouse",
        "response_format": "b64_json",
        "model": "grok-imagine-image-quality",
    }


def test_image_edits_forwarded_as_sent(live: Proxy, fresh_sim: Simulator) -> None:
    body = {"prompt": "Purple sky", "image": {"url": "https://example.com/photo.jpg"}, "n": 1}
    response = httpx.post(f"{live.api}/images/edits", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["url"].startswith("https://")
    assert sent(fresh_sim)["json"] == body


def test_images_generate_drops_openai_fields(live: Proxy, fresh_sim: Simulator) -> None:
    response = httpx.post(
        f"{live.api}/images/generate",
        json={"prompt": "A lighthouse", "size": "1024x1024", "quality": "hd", "style": "vivid"},
        headers=AUTH,
    )
    assert response.status_code == 200
    assert sent(fresh_sim)["json"] == {"prompt": "A lighthouse", "model": "grok-imagine-image"}


def test_images_generate_alias_adds_created_and_model(live: Proxy, fresh_sim: Simulator) -> None:
    response = httpx.post(
        f"{live.api}/images/generate",
        json={"prompt": "A fox", "aspect_ratio": "16:9"},
        headers=AUTH,
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == "grok-imagine-image"
    assert isinstance(answer["created"], int)
    assert answer["data"][0]["url"].endswith(".jpg")
    assert sent(fresh_sim)["json"] == {
        "prompt": "A fox",
        "aspect_ratio": "16:9",
        "model": "grok-imagine-image",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
    ],
)
def test_images_generate_bad_input_never_reaches_upstream(
    live: Proxy, fresh_sim: Simulator, body: dict[str, object], param: str
) -> None:
    # The proxy's own route checks what it fills in; /images/generations leaves it to xAI.
    response = httpx.post(f"{live.api}/images/generate", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == param
    assert fresh_sim.stats()["requests"] == 0


# vision


def test_vision_analyze_url(live: Proxy, fresh_sim: Simulator) -> None:
    response = httpx.post(
        f"{live.api}/vision/analyze",
        json={
            "image": {"url": "https://example.com/cat.jpg"},
            "temperature": 0.1,
            "max_tokens": 50,
        },
        headers=AUTH,
    )
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"model", "created", "content", "usage"}
    assert answer["content"].startswith("Hello!")
    assert answer["model"] == "grok-4.3"
    request = sent(fresh_sim)
    assert request["path"] == "/v1/chat/completions"
    assert request["json"] == {
        "model": "grok-4.3",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                    {"type": "text", "text": "What's in this image?"},
                ],
            }
        ],
        "temperature": 0.1,
        "max_tokens": 50,
    }


def test_vision_analyze_base64_gets_real_mime_type(live: Proxy, fresh_sim: Simulator) -> None:
    encoded = base64.b64encode(PNG).decode()
    response = httpx.post(
        f"{live.api}/vision/analyze",
        json={
            "image": {"b64_json": encoded},
            "prompt": "Colour?",
            "detail": "low",
            "model": "grok-4",
        },
        headers=AUTH,
    )
    assert response.status_code == 200
    parts = sent(fresh_sim)["json"]["messages"][0]["content"]  # type: ignore[index]
    assert parts[0]["image_url"] == {"url": f"data:image/png;base64,{encoded}", "detail": "low"}
    assert parts[1] == {"type": "text", "text": "Colour?"}


@pytest.mark.parametrize(
    ("image", "status", "words"),
    [
        ({}, 422, "exactly one of `url` or `b64_json`"),
        ({"url": "https://x/y.png", "b64_json": "AAAA"}, 422, "exactly one"),
        (
            {"b64_json": base64.b64encode(b"just some text, not a picture").decode()},
            422,
            "not a PNG, JPEG, WebP or GIF",
        ),
        ({"b64_json": "%%% not base64 %%%"}, 422, "not valid base64"),
        ({"b64_json": "A" * (28 * 1024 * 1024)}, 422, "xAI accepts images up to 20 MiB"),
    ],
)
def test_vision_bad_images_never_reach_upstream(
    live: Proxy, fresh_sim: Simulator, image: dict[str, str], status: int, words: str
) -> None:
    response = httpx.post(f"{live.api}/vision/analyze", json={"image": image}, headers=AUTH)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]
    assert fresh_sim.stats()["requests"] == 0


# models, embeddings, completions, tokenize


def test_models_list_retrieve_and_404(oai: openai.OpenAI) -> None:
    ids = [model.id for model in oai.models.list()]
    assert {"grok-4.7", "grok-4.3", "grok-imagine-image", "grok-voice-think-fast-1.0"} <= set(ids)
    assert oai.models.retrieve("grok-4.3").owned_by == "xai"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("grok-99")
    assert "grok-99" in caught.value.message


def test_embeddings(oai: openai.OpenAI, fresh_sim: Simulator) -> None:
    result = oai.embeddings.create(model="v1", input=["one", "two"], encoding_format="float")
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert sent(fresh_sim)["path"] == "/v1/embeddings"


def test_embeddings_input_is_xais_to_judge(live: Proxy, fresh_sim: Simulator) -> None:
    httpx.post(f"{live.api}/embeddings", json={"model": "v1", "input": []}, headers=AUTH)
    assert fresh_sim.stats()["requests"] == 1  # the proxy does not read `input`
    assert sent(fresh_sim)["json"] == {"model": "v1", "input": []}


def test_legacy_completions_plain_and_streaming(oai: openai.OpenAI) -> None:
    plain = oai.completions.create(model="grok-4.3", prompt="1, 2, 3, ", max_tokens=3)
    assert plain.choices[0].text.startswith("Hello!")
    streamed = oai.completions.create(model="grok-4.3@chunks=3", prompt="x", stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == "tok0 tok1 tok2 "


@pytest.mark.parametrize("route", ["tokenize", "tokenize-text"])
def test_tokenize(live: Proxy, fresh_sim: Simulator, route: str) -> None:
    response = httpx.post(
        f"{live.api}/{route}", json={"text": "Hello world!", "model": "grok-4"}, headers=AUTH
    )
    assert response.status_code == 200
    tokens = response.json()["token_ids"]
    assert [t["string_token"] for t in tokens] == ["Hello", " world!"]
    assert tokens[0]["token_bytes"] == list(b"Hello")
    assert sent(fresh_sim)["path"] == "/v1/tokenize-text"


def test_chat_with_image_parts(oai: openai.OpenAI, fresh_sim: Simulator) -> None:
    oai.chat.completions.create(
        model="grok-4",
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/a.png", "detail": "high"},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    parts = sent(fresh_sim)["json"]["messages"][0]["content"]  # type: ignore[index]
    assert parts[0]["image_url"]["detail"] == "high"


# Anthropic messages


def test_anthropic_sdk_messages_create(claude: anthropic.Anthropic, fresh_sim: Simulator) -> None:
    message = claude.messages.create(
        model="grok-4", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Hello!")
    assert message.stop_reason == "end_turn"
    request = sent(fresh_sim)
    assert request["path"] == "/v1/messages"
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["authorization"] == f"Bearer {KEY}"  # the SDK sent it as x-api-key
    assert "anthropic-version" in headers


def test_anthropic_sdk_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="grok-4@chunks=3", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "tok0 tok1 tok2 "
    assert final.usage.output_tokens == 3


def test_anthropic_errors_use_anthropics_envelope(claude: anthropic.Anthropic, live: Proxy) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }
    missing = httpx.post(f"{live.api}/messages", json={"model": "grok-4"})
    assert missing.status_code == 401
    assert missing.json()["type"] == "error"
    invalid = httpx.post(f"{live.api}/messages", json={"model": 4}, headers={"x-api-key": KEY})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["type"] == "invalid_request_error"
    assert "model" in invalid.json()["error"]["message"]


def test_anthropic_stream_cut_is_an_error_event(live: Proxy) -> None:
    body = {
        "model": "grok-4@chunks=5,pace=10,cut=2",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    response = httpx.post(f"{live.api}/messages", json=body, headers={"x-api-key": KEY})
    assert b"event: message_start" in response.content
    assert b"message_stop" not in response.content
    last = response.content.rstrip(b"\n").split(b"\n\n")[-1]
    assert last.startswith(b"event: error\ndata: ")
    assert orjson.loads(last.split(b"data: ", 1)[1])["type"] == "error"


def test_anthropic_sdk_raises_on_cut_stream(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIError):
        with claude.messages.stream(
            model="grok-4@chunks=5,pace=10,cut=2",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hi"}],
        ) as stream:
            for _ in stream.text_stream:
                pass


# Responses, deferred, pass-through


def test_responses_create_get_delete_and_stream(live: Proxy, fresh_sim: Simulator) -> None:
    created = httpx.post(
        f"{live.api}/responses", json={"model": "grok-4", "input": "Hi"}, headers=AUTH
    )
    assert created.status_code == 200
    response_id = created.json()["id"]
    fetched = httpx.get(f"{live.api}/responses/{response_id}", headers=AUTH)
    assert fetched.json()["output"][0]["content"][0]["text"].startswith("Hello!")
    deleted = httpx.delete(f"{live.api}/responses/{response_id}", headers=AUTH)
    assert deleted.json()["deleted"] is True
    assert httpx.get(f"{live.api}/responses/{response_id}", headers=AUTH).status_code == 404
    streamed = httpx.post(
        f"{live.api}/responses",
        json={"model": "grok-4@chunks=2", "input": "Hi", "stream": True},
        headers=AUTH,
    )
    assert streamed.headers["content-type"] == "text/event-stream"
    assert streamed.content.startswith(b"event: response.created\n")
    assert b"event: response.completed\n" in streamed.content


def test_deferred_completion(live: Proxy) -> None:
    started = httpx.post(
        f"{live.api}/chat/completions",
        json={"model": "grok-4", "deferred": True, "messages": [{"role": "user", "content": "Hi"}]},
        headers=AUTH,
    )
    request_id = started.json()["request_id"]
    done = httpx.get(f"{live.api}/chat/deferred-completion/{request_id}", headers=AUTH)
    assert done.status_code == 200
    assert done.json()["object"] == "chat.completion"
    pending_id = httpx.post(
        f"{live.api}/chat/completions",
        json={
            "model": "grok-4@pending",
            "deferred": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        headers=AUTH,
    ).json()["request_id"]
    pending = httpx.get(f"{live.api}/chat/deferred-completion/{pending_id}", headers=AUTH)
    assert pending.status_code == 202
    assert pending.content == b""


def test_pass_through_keeps_path_query_and_status(live: Proxy, fresh_sim: Simulator) -> None:
    response = httpx.get(f"{live.url}/v1/language-models?team=a%2Fb&x=1", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["models"][0]["id"] == "grok-4.7"
    request = sent(fresh_sim)
    assert (request["method"], request["path"], request["query"]) == (
        "GET",
        "/v1/language-models",
        "team=a%2Fb&x=1",
    )
    missing = httpx.post(f"{live.api}/no-such-route", json={"a": 1}, headers=AUTH)
    assert missing.status_code == 404
    assert "No route POST /v1/no-such-route" in missing.json()["error"]["message"]
    assert httpx.get(f"{live.api}/api-key", headers=AUTH).json()["acls"] == [
        "api-key:model:*",
        "api-key:endpoint:*",
    ]


def test_pass_through_multipart_upload(live: Proxy, fresh_sim: Simulator) -> None:
    response = httpx.post(
        f"{live.api}/files",
        files={"file": ("notes.txt", b"hello file")},
        data={"purpose": "assistants"},
        headers=AUTH,
    )
    assert response.status_code == 200
    assert response.json()["bytes"] == len(b"hello file")
    request = fresh_sim.last_request()
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert "hello file" in str(request["body"])


def test_openapi_documents_every_route(live: Proxy) -> None:
    schema = httpx.get(f"{live.url}/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/chat/completions",
        "/api/v1/images/generations",
        "/api/v1/images/generate",
        "/api/v1/vision/analyze",
        "/api/v1/completions",
        "/api/v1/embeddings",
        "/api/v1/tokenize",
        "/api/v1/messages",
        "/api/v1/responses",
        "/api/v1/models",
        "/api/v1/models/{model_id}",
        "/api/v1/{path}",
    ):
        assert path in paths, path
    for path, item in paths.items():
        post = item.get("post")
        if post and path != "/api/v1/{path}":
            ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert model.get("examples"), path
    assert httpx.get(f"{live.url}/docs").status_code == 200
