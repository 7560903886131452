"""Metrics, usage capture and access logs, as an operator scraping and reading them sees them."""

from __future__ import annotations

import httpx
import orjson

from tests.conftest import KEY
from tests.processes import Simulator, output_of, proxy
from tests.prometheus_text import sample

AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(url: str, model: str, **fields: object) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **fields}
    return httpx.post(f"{url}/api/v1/chat/completions", json=body, headers=AUTH, timeout=15)


def test_metrics_count_requests_tokens_errors_and_retries(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, xai_retry_backoff="0.01") as running:
        for _ in range(3):
            assert chat(running.url, "grok-4").status_code == 200
        chat(running.url, "grok-4@chunks=4", stream=True, stream_options={"include_usage": True})
        chat(running.url, "grok-4@chunks=4", stream=True)
        chat(running.url, "grok-4@chunks=6,pace=5,cut=2", stream=True)
        chat(running.url, "grok-4@status=503,fail_first=1")
        chat(running.url, "no-such-model")
        text = httpx.get(f"{running.url}/metrics").text
    route = "/api/v1/chat/completions"
    # The model label is the model the caller named (the simulator's faults ride in it).
    assert sample(text, "grok_proxy_requests_total", route=route, model="grok-4", status="200") == 3
    assert sample(text, "grok_proxy_requests_total", route=route, status="200") == 7
    assert sample(text, "grok_proxy_requests_total", route=route, status="404") == 1
    # Plain answers report usage in the body; the include_usage stream in its last chunk.
    assert sample(text, "grok_proxy_tokens_total", model="grok-4", kind="completion") == 3 * 10
    assert sample(text, "grok_proxy_tokens_total", model="grok-4@chunks=4", kind="completion") == 4
    assert sample(text, "grok_proxy_tokens_total", model="grok-4", kind="prompt") > 0
    # The stream without a usage chunk is counted as unknown, not as zero tokens.
    assert sample(text, "grok_proxy_streams_without_usage_total", model="grok-4@chunks=4") == 1
    assert sample(text, "grok_proxy_upstream_errors_total", kind="stream_cut") == 1
    assert sample(text, "grok_proxy_retries_total", route=route) == 1
    assert sample(text, "grok_proxy_request_duration_seconds_count", route=route) == 8
    assert sample(text, "grok_proxy_overhead_seconds_count", route=route) >= 7
    assert sample(text, "grok_proxy_open_streams") == 0


def test_capture_stream_usage_asks_xai_and_hides_the_chunk(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, capture_stream_usage="true") as running:
        response = chat(running.url, "grok-4@chunks=3", stream=True)
        text = httpx.get(f"{running.url}/metrics").text
    sent = orjson.loads(fresh_sim.last_request()["body"])
    assert sent["stream_options"] == {"include_usage": True}
    # The caller did not ask for usage, so it gets none: the stream it asked for, exactly.
    assert b'"usage"' not in response.content
    assert b'"choices":[]' not in response.content
    assert response.content.endswith(b"data: [DONE]\n\n")
    assert sample(text, "grok_proxy_tokens_total", model="grok-4@chunks=3", kind="completion") == 3
    assert sample(text, "grok_proxy_streams_without_usage_total") == 0


def test_metrics_add_up_across_workers(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, workers=2) as running:
        for _ in range(20):
            with httpx.Client() as fresh_connection:  # new connections spread over the workers
                body = {"model": "grok-4", "messages": MESSAGES}
                fresh_connection.post(
                    f"{running.url}/api/v1/chat/completions", json=body, headers=AUTH
                )
        text = httpx.get(f"{running.url}/metrics").text
    assert sample(text, "grok_proxy_requests_total", route="/api/v1/chat/completions") == 20


def test_json_access_log_line(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, log_format="json") as running:
        chat(running.url, "grok-4", temperature=0.1)
        httpx.get(f"{running.url}/health")
        logs = output_of(running.process)
    lines = [orjson.loads(line) for line in logs.splitlines() if '"grok_proxy.access"' in line]
    entry = next(line for line in lines if line["path"] == "/api/v1/chat/completions")
    assert entry["status"] == 200
    assert entry["model"] == "grok-4"
    assert entry["key"].startswith("sha256:")
    assert entry["tokens"]["completion"] == 10
    assert entry["client"] == "127.0.0.1"
    assert entry["request_id"]
    for field in ("duration_ms", "first_byte_ms", "upstream_ms"):
        assert entry[field] > 0
