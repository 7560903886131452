"""Faults, retries, keep-alive, request ids and limits, end to end against real processes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, open_fds, proxy, settle

AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]
READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def strict(sim: Simulator) -> Iterator[Proxy]:
    """A proxy that does not retry and gives up on silence after one second."""
    with proxy(sim.base_url, xai_max_retries="0", xai_read_timeout=str(READ_TIMEOUT)) as running:
        yield running


def chat(url: str, model: str, stream: bool = False, timeout: float = 15) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return httpx.post(f"{url}/chat/completions", json=body, headers=AUTH, timeout=timeout)


def last_event(response: httpx.Response) -> dict[str, object]:
    event = response.content.rstrip(b"\n").split(b"\n\n")[-1]
    data: dict[str, object] = orjson.loads(event.removeprefix(b"data: "))
    return data


# (model directives, stream?, expected status, words in the error, upper bound in seconds)
FAULTS = [
    ("grok-4@status=429,retry_after=7", False, 429, "requests per second limit", 3),
    ("grok-4@status=500", False, 500, "internal error", 3),
    ("grok-4@status=502", False, 502, "bad gateway", 3),
    ("grok-4@status=503", False, 503, "overloaded", 3),
    ("grok-4@status=504", False, 504, "time out", 3),
    # The request reached upstream before the reset: it may be running, so it is not resent.
    ("grok-4@reset", False, 502, "connection was lost", 3),
    ("grok-4@delay=10000", False, 504, "sent nothing for 1 seconds", READ_TIMEOUT + 2),
    ("grok-4@body=malformed", False, 502, "malformed JSON", 3),
    ("grok-4@status=502,body=html", False, 502, "bytes of text/html", 3),
    ("grok-4@chunks=10,pace=20,cut=4", True, 200, "connection was lost", 3),
    ("grok-4@chunks=10,stall=3", True, 200, "sent nothing for 1 seconds", READ_TIMEOUT + 2),
]


@pytest.mark.parametrize(("model", "stream", "status", "words", "within"), FAULTS)
def test_fault_matrix(
    strict: Proxy, sim: Simulator, model: str, stream: bool, status: int, words: str, within: float
) -> None:
    started = time.monotonic()
    response = chat(strict.api, model, stream)
    elapsed = time.monotonic() - started
    assert elapsed < within
    assert response.status_code == status
    if stream:
        assert b"[DONE]" not in response.content
        error = last_event(response)["error"]
    else:
        error = response.json()["error"]
    assert isinstance(error, dict)
    assert words.lower() in str(error["message"]).lower()
    if "retry_after" in model:
        assert response.headers["retry-after"] == "7"
    assert httpx.get(f"{strict.url}/health").status_code == 200


def test_refused_connection_is_502_after_retries() -> None:
    with proxy(f"http://127.0.0.1:{free_port()}/v1", xai_retry_backoff="0.01") as running:
        response = chat(running.api, "grok-4")
    assert response.status_code == 502
    assert response.headers["x-grok-proxy-attempts"] == "3"


def test_very_large_response_arrives_whole(strict: Proxy) -> None:
    response = chat(strict.api, "grok-4@size=20000000", timeout=60)
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    assert len(content) == 20_000_000


def test_faults_leak_no_descriptors(strict: Proxy) -> None:
    def one_round() -> None:
        for model, stream, *_ in FAULTS:
            if "delay" not in model and "stall" not in model:  # the slow ones are covered above
                chat(strict.api, model, stream)

    one_round()  # warm-up: the connection pool fills to its working size
    baseline = open_fds(strict.process.pid)
    for _ in range(3):
        one_round()
    assert settle(lambda: open_fds(strict.process.pid), baseline) <= baseline


def test_retries_until_upstream_recovers(live: Proxy, fresh_sim: Simulator) -> None:
    response = chat(live.api, "grok-4@status=503,fail_first=2")
    assert response.status_code == 200
    assert response.headers["x-grok-proxy-attempts"] == "3"
    assert fresh_sim.stats()["requests"] == 3


def test_client_errors_are_not_retried(live: Proxy, fresh_sim: Simulator) -> None:
    response = chat(live.api, "grok-4@status=400")
    assert response.status_code == 400
    assert response.headers["x-grok-proxy-attempts"] == "1"
    assert fresh_sim.stats()["requests"] == 1


def test_streams_are_not_retried_once_started(live: Proxy, fresh_sim: Simulator) -> None:
    response = chat(live.api, "grok-4@chunks=5,pace=10,cut=2", stream=True)
    assert b"connection was lost" in response.content
    assert fresh_sim.stats()["requests"] == 1


def test_keepalive_comments_during_silence_are_ignored_by_the_sdk(sim: Simulator) -> None:
    with proxy(sim.base_url, sse_keepalive_seconds="0.1") as running:
        raw = chat(running.api, "grok-4@chunks=3,pace=350", stream=True)
        assert b": keep-alive\n\n" in raw.content
        assert raw.content.endswith(b"data: [DONE]\n\n")
        with openai.OpenAI(base_url=running.api, api_key=KEY, max_retries=0) as sdk:
            stream = sdk.chat.completions.create(
                model="grok-4@chunks=3,pace=350",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )
    assert text == "tok0 tok1 tok2 "


def test_request_id_is_kept_returned_and_sent_upstream(live: Proxy, fresh_sim: Simulator) -> None:
    mine = httpx.post(
        f"{live.api}/chat/completions",
        json={"model": "grok-4", "messages": MESSAGES},
        headers={**AUTH, "x-request-id": "trace-42"},
    )
    assert mine.headers["x-request-id"] == "trace-42"
    assert fresh_sim.last_request()["headers"]["x-request-id"] == "trace-42"
    forged = httpx.post(
        f"{live.api}/chat/completions",
        json={"model": "grok-4", "messages": MESSAGES},
        headers={**AUTH, "x-request-id": "bad id\twith spaces"},
    )
    generated = forged.headers["x-request-id"]
    assert len(generated) == 32
    assert fresh_sim.last_request()["headers"]["x-request-id"] == generated
    assert "proxy;dur=" in forged.headers["server-timing"]


def test_deeply_nested_json_is_refused_cleanly(live: Proxy, fresh_sim: Simulator) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    body = '{"model": "grok-4", "messages": [{"role": "user", "content": "x"}], "x": ' + deep + "}"
    response = httpx.post(f"{live.api}/chat/completions", content=body, headers=AUTH)
    assert response.status_code in {400, 422}
    assert response.json()["error"]["message"]
    assert fresh_sim.stats()["requests"] == 0


def test_oversized_headers_are_refused_and_the_proxy_lives_on(live: Proxy) -> None:
    response = httpx.get(f"{live.url}/health", headers={"x-big": "y" * 200_000})
    assert response.status_code == 431
    assert "MAX_HEADER_BYTES" in response.json()["error"]["message"]
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_body_over_the_limit_is_413_without_reading_it_all(sim: Simulator) -> None:
    with proxy(sim.base_url, max_body_bytes="1000") as running:
        response = httpx.post(
            f"{running.api}/chat/completions", content=b"x" * 5_000_000, headers=AUTH
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
