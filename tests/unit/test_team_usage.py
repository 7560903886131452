"""A shared proxy charges members what xAI reported, and usage cannot slip past the budgets.

The app runs in-process with a team (SQLite in a temporary directory) in front of a
loopback upstream whose answers come from respx, so each test states xAI's exact answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from xai_sdk.proto.v6 import chat_pb2

from grok_proxy.teams.errors import BudgetExceeded, NotAllowed
from grok_proxy.teams.grpc_calls import CallGate
from tests.unit.harness import chat, proxied, upstream
from tests.unit.test_relay import Pieces, sse

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": "Bearer admin-token-0123456789"}
CENT_TICKS = 100_000_000  # xAI: one US cent is 100,000,000 ticks
CUT = httpx.ReadError("connection lost")


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


async def test_a_stream_cut_before_its_usage_is_charged_an_estimate(tmp_path: Path) -> None:
    cut = Pieces(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n', then=CUT)
    router = upstream()
    router.post("/chat/completions").mock(
        side_effect=[httpx.Response(200, json=completion(CENT_TICKS)), sse(cut)]
    )
    async with team(router, tmp_path) as client:
        keys = await member(client, "quitter", tokens_per_day=10_000)
        await client.post("/api/v1/chat/completions", json=chat(), headers=keys)
        answer = await client.post("/api/v1/chat/completions", json=chat(stream=True), headers=keys)
        assert b"error" in answer.content  # the caller saw the cut
        rows = await usage_rows(client, "quitter")
    # xAI bills what it generated: the member's largest request (13 tokens, 1 cent) stands in.
    assert rows[0]["requests"] == 2
    assert rows[0]["prompt_tokens"] + rows[0]["completion_tokens"] == 13 + 13
    assert rows[0]["cost_usd"] == pytest.approx(0.02)


async def test_a_cut_stream_is_charged_at_least_a_token_per_relayed_event(
    tmp_path: Path,
) -> None:
    # No earlier request to go by: what the caller received is the floor of the charge.
    delta = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    router = upstream()
    router.post("/chat/completions").mock(return_value=sse(Pieces(delta * 7, then=CUT)))
    async with team(router, tmp_path) as client:
        keys = await member(client, "first", tokens_per_day=10_000)
        answer = await client.post("/api/v1/chat/completions", json=chat(stream=True), headers=keys)
        assert answer.content.count(delta) == 7
        rows = await usage_rows(client, "first")
    assert rows[0]["completion_tokens"] == 7


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/chat/completions", chat(deferred=True)),
        ("/api/v1/batches", {"name": "nightly"}),
    ],
)
async def test_budgeted_members_cannot_start_work_billed_out_of_sight(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    router = upstream()
    route = router.post(path.removeprefix("/api/v1")).respond(200, json={"request_id": "d1"})
    async with team(router, tmp_path) as client:
        keys = await member(client, "budgeted", dollars_per_month=5)
        refused = await client.post(path, json=body, headers=keys)
        free = await member(client, "unbudgeted")
        allowed = await client.post(path, json=body, headers=free)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "budget_not_enforceable"
    assert allowed.status_code == 200
    assert route.call_count == 1  # only the member without a budget reached xAI


async def test_deferred_completions_and_image_edits_cost_what_xai_reported(
    tmp_path: Path,
) -> None:
    router = upstream()
    router.post("/chat/completions").respond(200, json={"request_id": "d1"})
    router.get("/chat/deferred-completion/d1").respond(200, json=completion(3 * CENT_TICKS))
    edited = {"data": [{"url": "https://x/e.jpg"}], "usage": {"cost_in_usd_ticks": CENT_TICKS}}
    router.post("/images/edits").respond(200, json=edited)
    async with team(router, tmp_path) as client:
        keys = await member(client, "patient")
        started = await client.post(
            "/api/v1/chat/completions", json=chat(deferred=True), headers=keys
        )
        assert started.json() == {"request_id": "d1"}
        result = await client.get("/api/v1/chat/deferred-completion/d1", headers=keys)
        assert result.json() == completion(3 * CENT_TICKS)  # relayed unchanged
        edit = {"prompt": "purple sky", "image": {"url": "https://x/p.jpg"}}
        assert (await client.post("/api/v1/images/edits", json=edit, headers=keys)).json() == edited
        rows = await usage_rows(client, "patient")
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(0.04)


async def test_a_request_larger_than_the_budget_left_is_refused_before_upstream(
    tmp_path: Path,
) -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=completion(CENT_TICKS))
    async with team(router, tmp_path) as client:
        keys = await member(client, "frugal", tokens_per_day=300)
        huge = await client.post(
            "/api/v1/chat/completions", json=chat(max_tokens=3000), headers=keys
        )
        small = await client.post(
            "/api/v1/chat/completions", json=chat(max_completion_tokens=100), headers=keys
        )
    assert huge.status_code == 429, huge.text
    assert huge.json()["error"]["code"] == "budget_exceeded"
    assert small.status_code == 200
    assert route.call_count == 1  # the one that could overshoot tenfold never went upstream


class Stalls(httpx.AsyncByteStream):
    """One event, then silence until `released` (the usage chunk never comes in time)."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.released = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await self.released.wait()


async def test_a_stream_the_caller_abandons_before_its_usage_is_charged_an_estimate(
    tmp_path: Path,
) -> None:
    stalls = Stalls(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
    router = upstream()
    router.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=completion(CENT_TICKS)),
            httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stalls),
        ]
    )
    async with team(router, tmp_path) as client:
        keys = await member(client, "leaver", tokens_per_day=10_000)
        await client.post("/api/v1/chat/completions", json=chat(), headers=keys)
        app = client._transport.app  # type: ignore[attr-defined]
        try:
            sent = await hang_up_after_first_event(app, keys["authorization"], chat(stream=True))
        finally:
            stalls.released.set()
        rows = await usage_rows(client, "leaver")
    assert b"Hi" in b"".join(m.get("body", b"") for m in sent)
    assert rows[0]["requests"] == 2
    assert rows[0]["prompt_tokens"] + rows[0]["completion_tokens"] == 13 + 13
    assert rows[0]["cost_usd"] == pytest.approx(0.02)


async def hang_up_after_first_event(app: Any, authorization: str, body: Any) -> list[Any]:
    """Call the app as an ASGI server would, and hang up once the first event arrived."""
    raw = orjson.dumps(body)
    got_event = asyncio.Event()
    sent: list[Any] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await got_event.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and b"Hi" in message.get("body", b""):
            got_event.set()

    path = b"/api/v1/chat/completions"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"proxy.test"),
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("proxy.test", 80),
    }
    await app(scope, receive, send)
    return sent


async def test_budgeted_members_cannot_start_deferred_completions_over_grpc(
    tmp_path: Path,
) -> None:
    async with team(upstream(), tmp_path) as client:
        keys = await member(client, "grpc-budgeted", tokens_per_day=1000)
        shared = client._transport.app.state.team  # type: ignore[attr-defined]
        budgeted = shared.admit(keys["authorization"].removeprefix("Bearer "), "metadata")
        request = chat_pb2.GetCompletionsRequest(model="grok-4").SerializeToString()
        deferred = CallGate(shared, budgeted, "/xai_api.Chat/StartDeferredCompletion")
        with pytest.raises(NotAllowed) as refused:
            await deferred.admit(request)
        plain = CallGate(shared, budgeted, "/xai_api.Chat/GetCompletion")
        await plain.admit(request)  # the same request, answered at once: admitted
        assert plain.admission is not None
        plain.admission.release()
        huge = chat_pb2.GetCompletionsRequest(model="grok-4", max_tokens=5000)
        with pytest.raises(BudgetExceeded):
            await CallGate(shared, budgeted, "/xai_api.Chat/GetCompletion").admit(
                huge.SerializeToString()
            )
    assert refused.value.code == "budget_not_enforceable"
