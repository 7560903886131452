"""Chat completions end to end: the real proxy process, the simulator, real clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, proxy

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def client(live: Proxy, fresh_sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.api, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def open_stream(live: Proxy, body: dict[str, object]) -> AbstractContextManager[httpx.Response]:
    """A chat completion stream, read as the test goes."""
    return httpx.stream(
        "POST",
        f"{live.api}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}"},
    )


def sse_events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), "every event ends with a blank line"
    return body.removesuffix(b"\n\n").split(b"\n\n")


def test_openai_sdk_plain_chat(client: openai.OpenAI, fresh_sim: Simulator) -> None:
    completion = client.chat.completions.create(model="grok-4", messages=MESSAGES, temperature=0.5)
    assert completion.choices[0].message.content == (
        "Hello! This is the grok-proxy simulator standing in for xAI."
    )
    assert completion.usage is not None and completion.usage.total_tokens > 0
    seen = fresh_sim.last_request()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(seen["body"])["temperature"] == 0.5


def test_openai_sdk_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="grok-4@chunks=4",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 "
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize(
    ("model", "error_class", "words"),
    [
        ("grok-4@status=401", openai.AuthenticationError, "No API key provided"),
        ("no-such-model", openai.NotFoundError, "The model no-such-model does not exist"),
        ("grok-4@status=429", openai.RateLimitError, "requests per second limit"),
        ("grok-4@status=500", openai.InternalServerError, "internal error"),
    ],
)
def test_openai_sdk_raises_the_right_error_class(
    client: openai.OpenAI, model: str, error_class: type[openai.APIStatusError], words: str
) -> None:
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model=model, messages=MESSAGES)
    assert words in caught.value.message


def test_wrong_key_reaches_the_caller_as_xais_400(live: Proxy) -> None:
    with openai.OpenAI(base_url=live.api, api_key="xai-invalid-key", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert "Incorrect API key provided: xa***ey" in caught.value.message
    assert "xai-invalid-key" not in str(caught.value.body)


def test_raw_sse_framing_and_headers(live: Proxy, fresh_sim: Simulator) -> None:
    body = {"model": "grok-4@chunks=2", "messages": MESSAGES, "stream": True}
    with open_stream(live, body) as response:
        raw = response.read()
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = sse_events(raw)
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant"},
        {"content": "tok0 "},
        {"content": "tok1 "},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


def test_stream_is_not_buffered(live: Proxy) -> None:
    body = {"model": "grok-4@chunks=5,pace=100", "messages": MESSAGES, "stream": True}
    arrivals: list[float] = []
    start = time.monotonic()
    with open_stream(live, body) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 5
    # Chunks are paced 100 ms apart upstream; relayed as they come, they stay apart.
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_cut_mid_stream_is_an_error_not_an_ending(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="grok-4@chunks=6,pace=20,cut=3", messages=MESSAGES, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            assert isinstance(chunk, ChatCompletionChunk)
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "tok0 tok1 tok2 "
    assert "Stream interrupted" in caught.value.message


def test_cut_stream_raw_has_no_done(live: Proxy) -> None:
    body = {"model": "grok-4@chunks=6,pace=20,cut=3", "messages": MESSAGES, "stream": True}
    response = httpx.post(
        f"{live.api}/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    events = sse_events(response.content)
    assert b"[DONE]" not in response.content
    assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["type"] == "api_error"


def test_client_disconnect_mid_stream_closes_upstream(live: Proxy, fresh_sim: Simulator) -> None:
    body = {"model": "grok-4@chunks=500,pace=50", "messages": MESSAGES, "stream": True}
    with open_stream(live, body) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break  # leave after the first words
    # Within 10 s: left alone, the 500 chunks would take 25 s and complete, not cancel.
    stats = fresh_sim.wait_for_stat("streams_cancelled", 1, timeout=10)
    assert (stats["streams_cancelled"], stats["streams_completed"]) == (1, 0)


def test_client_disconnect_while_waiting_closes_upstream(live: Proxy, fresh_sim: Simulator) -> None:
    body = {"model": "grok-4@delay=5000", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live.api}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
            timeout=0.3,
        )
    # Within 4 s: left alone, the upstream would answer after 5 s, not be cancelled.
    stats = fresh_sim.wait_for_stat("requests_cancelled", 1, timeout=4)
    assert stats["requests_cancelled"] == 1


def test_unreachable_upstream_is_502() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with proxy(closed) as running:
        response = httpx.post(
            f"{running.api}/chat/completions",
            json={"model": "grok-4", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY}"},
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


def test_stalled_upstream_is_504(sim: Simulator) -> None:
    with proxy(sim.base_url, xai_read_timeout="0.5") as running:
        started = time.monotonic()
        response = httpx.post(
            f"{running.api}/chat/completions",
            json={"model": "grok-4@delay=5000", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "sent nothing for 0.5 seconds" in response.json()["error"]["message"]
    assert elapsed < 4


def test_stall_mid_stream_ends_with_timeout_event(sim: Simulator) -> None:
    with proxy(sim.base_url, xai_read_timeout="0.5") as running:
        response = httpx.post(
            f"{running.api}/chat/completions",
            json={"model": "grok-4@chunks=5,stall=2", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=10,
        )
    events = sse_events(response.content)
    assert b"tok1" in events[-2]
    assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "upstream_timeout"
    assert b"[DONE]" not in response.content
