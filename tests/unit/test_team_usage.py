"""A shared proxy charges members what xAI reported, and usage cannot slip past the budgets.

The app runs in-process with a team (SQLite in a temporary directory) in front of a
loopback upstream whose answers come from respx, so each test states xAI's exact answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx

from tests.unit.harness import chat, proxied, upstream
from tests.unit.test_relay import Pieces, sse

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": "Bearer admin-token-0123456789"}
CENT_TICKS = 100_000_000  # xAI: one US cent is 100,000,000 ticks


@asynccontextmanager
async def team(router: respx.Router, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    router.get("/language-models").respond(200, json={"models": []})
    settings: dict[str, Any] = {
        "database_url": f"sqlite:///{data_dir / 'team.db'}",
        "xai_api_key": "xai-server-key-0123456789",
        "grok_proxy_admin_token": ADMIN["authorization"].removeprefix("Bearer "),
        "team_refresh_seconds": 60,
    }
    async with proxied(router, **settings) as client:
        yield client


async def member(client: httpx.AsyncClient, name: str, **limits: Any) -> dict[str, str]:
    answer = await client.post("/admin/members", json={"name": name, **limits}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return {"authorization": f"Bearer {answer.json()['key']}"}


async def usage_rows(client: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    flushed = client._transport.app.state  # type: ignore[attr-defined]
    await flushed.team.flush()
    answer = await client.get(f"/admin/usage?member={name}", headers=ADMIN)
    rows: list[dict[str, Any]] = answer.json()["data"]
    return rows


def completion(ticks: int, tools: int = 0) -> dict[str, Any]:
    """A chat answer that used server-side tools: almost no tokens, a real cost."""
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "grok-4",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Found it."}}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "total_tokens": 13,
            "num_sources_used": 0,
            "num_server_side_tools_used": tools,
            "cost_in_usd_ticks": ticks,
        },
    }


async def test_a_dollar_budget_is_charged_what_xai_reported(tmp_path: Path) -> None:
    router = upstream()
    router.post("/chat/completions").respond(200, json=completion(2 * CENT_TICKS, tools=3))
    async with team(router, tmp_path) as client:
        keys = await member(client, "searcher", dollars_per_day=0.05)
        statuses = []
        for _ in range(6):
            answer = await client.post("/api/v1/chat/completions", json=chat(), headers=keys)
            statuses.append(answer.status_code)
        rows = await usage_rows(client, "searcher")
    # 13 tokens cost nothing at any table price; xAI said 2 cents each (3 web searches).
    admitted = statuses.count(200)
    assert statuses[admitted:] == [429] * (6 - admitted)
    assert 2 <= admitted <= 3  # 5 cents allow 2 of them, and at most one more in flight
    assert [row["cost_usd"] for row in rows] == [pytest.approx(0.02 * admitted)]
    assert rows[0]["server_side_tools"] == 3 * admitted


async def test_a_stream_without_include_usage_is_still_counted(tmp_path: Path) -> None:
    usage = completion(CENT_TICKS)["usage"]
    events = [
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
        b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    router = upstream()
    route = router.post("/chat/completions").mock(return_value=sse(Pieces(*events)))
    async with team(router, tmp_path) as client:
        keys = await member(client, "streamer", tokens_per_day=1000)
        answer = await client.post("/api/v1/chat/completions", json=chat(stream=True), headers=keys)
        rows = await usage_rows(client, "streamer")
    # xAI was asked for the usage chunk; the caller, who did not ask, does not get it.
    sent = orjson.loads(route.calls.last.request.content)
    assert sent["stream_options"] == {"include_usage": True}
    assert answer.content == events[0] + events[2]
    assert rows[0]["prompt_tokens"] == 10 and rows[0]["completion_tokens"] == 3
    assert rows[0]["cost_usd"] == pytest.approx(0.01)
