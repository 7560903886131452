"""Access keys, key hygiene in logs and bodies, and CORS, against real processes."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import openai
import pytest

from tests.processes import Simulator, output_of, proxy

CALLER_KEY = "xai-caller-secret-7f3a9c2e51"
SERVER_KEY = "xai-server-secret-0b8d4e6f13"
MESSAGES = [{"role": "user", "content": "hi"}]


def post(url: str, key: str | None, model: str = "grok-4", stream: bool = False) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=15)


def test_access_keys_gate_callers_and_keep_the_real_key_on_the_server(
    fresh_sim: Simulator, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nteam-key-1\nteam-key-2\n")
    with proxy(
        fresh_sim.base_url, grok_proxy_api_keys=f"@{keys_file}", xai_api_key=SERVER_KEY
    ) as running:
        allowed = post(running.api, "team-key-2")
        assert allowed.status_code == 200
        assert fresh_sim.last_request()["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
        before = fresh_sim.stats()["requests"]
        for wrong in ("team-key-3", SERVER_KEY, None):
            refused = post(running.api, wrong)
            assert refused.status_code == 401
            assert SERVER_KEY not in refused.text
        assert fresh_sim.stats()["requests"] == before
        with openai.OpenAI(base_url=running.api, api_key="team-key-1", max_retries=0) as sdk:
            reply = sdk.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content


def test_access_keys_as_a_list_setting(fresh_sim: Simulator) -> None:
    with proxy(
        fresh_sim.base_url, grok_proxy_api_keys="alpha, beta", xai_api_key=SERVER_KEY
    ) as running:
        assert post(running.api, "beta").status_code == 200
        assert post(running.api, "gamma").status_code == 401


def test_no_key_appears_in_logs_or_bodies_of_a_full_run(fresh_sim: Simulator) -> None:
    with proxy(
        fresh_sim.base_url,
        log_level="debug",
        log_format="json",
        xai_max_retries="1",
        xai_retry_backoff="0.01",
    ) as running:
        bodies = [
            post(running.api, CALLER_KEY),
            post(running.api, CALLER_KEY, "grok-4@chunks=3", stream=True),
            post(running.api, CALLER_KEY, "grok-4@status=429"),
            post(running.api, CALLER_KEY, "grok-4@status=500"),
            post(running.api, CALLER_KEY, "grok-4@chunks=5,pace=10,cut=2", stream=True),
            post(running.api, CALLER_KEY, "no-such-model"),
            post(running.api, "xai-invalid-" + CALLER_KEY),
            httpx.post(
                f"{running.api}/messages",
                json={"model": "grok-4", "max_tokens": 5, "messages": MESSAGES},
                headers={"x-api-key": CALLER_KEY},
            ),
            httpx.get(f"{running.api}/models", headers={"authorization": f"Bearer {CALLER_KEY}"}),
        ]
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=15)
        logs = output_of(running.process)
    for response in bodies:
        assert CALLER_KEY not in response.text
        assert CALLER_KEY not in str(response.headers)
    assert '"logger":"grok_proxy.access"' in logs
    assert logs.count('"key":"sha256:') >= len(bodies) - 1
    assert CALLER_KEY not in logs
    assert CALLER_KEY[-12:] not in logs  # not even a tail of it


def test_cors_is_off_by_default(live_url: str) -> None:
    preflight = httpx.options(
        f"{live_url}/api/v1/chat/completions",
        headers={"origin": "http://example.com", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture
def live_url(live: object) -> str:
    return str(live.url)  # type: ignore[attr-defined]


def test_cors_preflight_for_an_allowed_origin(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, cors_allow_origins="http://localhost:3000") as running:
        preflight = httpx.options(
            f"{running.api}/chat/completions",
            headers={
                "origin": "http://localhost:3000",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        actual = httpx.post(
            f"{running.api}/chat/completions",
            json={"model": "grok-4", "messages": MESSAGES},
            headers={"origin": "http://localhost:3000", "authorization": f"Bearer {CALLER_KEY}"},
        )
        assert actual.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "x-request-id" in actual.headers["access-control-expose-headers"]
        other = httpx.options(
            f"{running.api}/chat/completions",
            headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers
