"""Each upstream preset against the simulator standing in for that access point: the request
the access point receives, and the answer the caller gets (plain and streaming)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import orjson
import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, proxy

AUTH = {"authorization": f"Bearer {KEY}"}


@dataclass
class Case:
    preset: str
    base_path: str  # where the access point serves the API
    model_sent: str  # what the access point receives for the caller's "grok-4"
    unsupported: str | None  # a route the access point lacks


CASES = [
    Case("xai", "/v1", "grok-4", None),
    Case("openrouter", "/api/v1", "x-ai/grok-4", "/tokenize"),
    Case("cometapi", "/v1", "grok-4", "/tokenize"),
    Case("cloudflare", "/v1/acct123/gw-main/grok/v1", "grok-4", None),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.preset)
def preset(
    request: pytest.FixtureRequest, sim: Simulator
) -> Iterator[tuple[Case, Proxy, Simulator]]:
    case: Case = request.param
    with proxy(
        sim.url + case.base_path,
        xai_upstream=case.preset,
        cloudflare_account_id="acct123",
        cloudflare_gateway_id="gw-main",
        cloudflare_aig_token="cf-token-1",
    ) as running:
        yield case, running, sim


def test_plain_request_and_answer(preset: tuple[Case, Proxy, Simulator]) -> None:
    case, running, sim = preset
    with openai.OpenAI(base_url=running.api, api_key=KEY, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(
            model="grok-4", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.model == "grok-4"  # the caller's form, whatever the access point calls it
    seen = sim.last_request()
    assert seen["path"] == case.base_path + "/chat/completions"
    assert orjson.loads(seen["body"])["model"] == case.model_sent
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"
    if case.preset == "cloudflare":
        assert seen["headers"]["cf-aig-authorization"] == "Bearer cf-token-1"
    else:
        assert "cf-aig-authorization" not in seen["headers"]


def test_streaming_answer_uses_the_callers_model_names(
    preset: tuple[Case, Proxy, Simulator],
) -> None:
    case, running, sim = preset
    body = {"model": "grok-4", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{running.api}/chat/completions", json=body, headers=AUTH)
    chunks = [
        orjson.loads(e.removeprefix(b"data: "))
        for e in response.content.split(b"\n\n")
        if e.startswith(b"data: {")
    ]
    assert chunks
    assert {c["model"] for c in chunks} == {"grok-4"}
    assert response.content.endswith(b"data: [DONE]\n\n")
    assert orjson.loads(sim.last_request()["body"])["model"] == case.model_sent


@pytest.mark.parametrize(
    "preset", [c for c in CASES if c.unsupported], ids=lambda c: c.preset, indirect=True
)
def test_missing_routes_are_501_and_never_sent(preset: tuple[Case, Proxy, Simulator]) -> None:
    case, running, sim = preset
    before = sim.stats()["requests"]
    response = httpx.post(
        f"{running.api}{case.unsupported}", json={"text": "hi", "model": "grok-4"}, headers=AUTH
    )
    assert response.status_code == 501
    message = response.json()["error"]["message"]
    assert case.preset in message
    assert "/tokenize-text" in message
    assert sim.stats()["requests"] == before


def test_health_reports_the_upstream_without_keys(preset: tuple[Case, Proxy, Simulator]) -> None:
    case, running, running_sim = preset
    report = httpx.get(f"{running.url}/health?upstream=1").json()
    assert report["upstream"]["name"] == case.preset
    assert report["upstream"]["reachable"] is True
    # Only the upstream's origin: a base URL's path may carry account and gateway ids.
    assert report["upstream"]["base_url"] == running_sim.url
    assert "acct123" not in str(report)
    assert "gw-main" not in str(report)
    assert "cf-token-1" not in str(report)
    assert KEY not in str(report)


def test_unreachable_upstream_makes_health_503() -> None:
    with proxy(f"http://127.0.0.1:{free_port()}/v1") as running:
        response = httpx.get(f"{running.url}/health?upstream=1")
        plain = httpx.get(f"{running.url}/health")
    assert response.status_code == 503
    assert response.json()["upstream"]["reachable"] is False
    assert plain.status_code == 200  # liveness never depends on the upstream


def test_model_aliases_map_both_ways(sim: Simulator) -> None:
    sim.reset()
    with proxy(
        sim.url + "/api/v1",
        xai_upstream="openrouter",
        xai_model_aliases="fast=x-ai/grok-4.20-non-reasoning",
    ) as running:
        body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{running.api}/chat/completions", json=body, headers=AUTH).json()
    assert orjson.loads(sim.last_request()["body"])["model"] == "x-ai/grok-4.20-non-reasoning"
    assert reply["model"] == "fast"
