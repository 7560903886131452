"""Drift defects of issue 22: one decision per concern, whichever way a request takes.

Each test failed on the code before the serving layer (entry.py) and the route table
(routes/table.py) took over from the middleware chain and the per-area routers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import respx

from grok_proxy.calls.forwarder import Forwarder
from grok_proxy.routes.catalog import ROWS
from grok_proxy.teams.team import Team
from tests.unit.harness import AUTH, chat, proxied, upstream

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "admin-token-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def access_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "grok_proxy.access"
    ]


async def test_an_unexpected_error_is_logged_with_the_status_the_caller_got(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller gets 500 in the envelope; the access line says 500, not 499."""

    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Forwarder, "forward", broken)
    caplog.set_level(logging.INFO, logger="grok_proxy")
    async with proxied(upstream()) as client:
        answer = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
    assert answer.status_code == 500
    assert answer.json()["error"]["message"] == "Internal error in grok-proxy."
    assert "a bug" not in answer.text
    assert [fields["status"] for fields in access_fields(caplog)] == [500]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


def shared_settings(data_dir: Path) -> dict[str, Any]:
    return {
        "database_url": f"sqlite:///{data_dir / 'team.db'}",
        "xai_api_key": "xai-server-key-0123456789",
        "grok_proxy_admin_token": ADMIN_TOKEN,
    }


def prices(router: respx.Router) -> respx.Router:
    router.get("/language-models").respond(200, json={"models": []})
    return router


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_anthropic_routes_answer_a_missing_key_in_anthropics_envelope(
    data_dir: Path, path: str
) -> None:
    """Solo or shared, the same route answers in the same envelope (the row decides)."""
    body = {"model": "grok-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    shapes = []
    async with proxied(upstream()) as solo:
        shapes.append((await solo.post(path, json=body)).json())
    async with proxied(prices(upstream()), **shared_settings(data_dir)) as shared:
        shapes.append((await shared.post(path, json=body)).json())
    for shape in shapes:
        assert shape["type"] == "error", shape  # Anthropic's envelope
        assert shape["error"]["type"] == "authentication_error"


async def test_a_shared_proxy_checks_a_members_key_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The team gate admits the member; the route takes that caller, not a second check."""
    router = prices(upstream())
    router.post("/chat/completions").respond(200, json={"choices": []})
    admitted = []
    admit = Team.admit

    def counting(self: Team, presented: str | None, where: str = "") -> Any:
        admitted.append(presented)
        return admit(self, presented, where)

    monkeypatch.setattr(Team, "admit", counting)
    async with proxied(router, **shared_settings(data_dir)) as client:
        added = await client.post("/admin/members", json={"name": "ann"}, headers=ADMIN)
        key = added.json()["key"]
        answer = await client.post(
            "/v1/chat/completions", json=chat(), headers={"authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200, answer.text
    assert admitted == [key]


async def test_every_row_is_documented_once_and_served_by_the_entry() -> None:
    """The OpenAPI document and the dispatcher read the same rows."""
    async with proxied(upstream()) as client:
        schema = (await client.get("/openapi.json")).json()
    for row in ROWS:
        operation = schema["paths"][row.template][row.method.lower()]
        assert operation["summary"] == row.summary
        if row.schema is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{row.schema.__name__}"}


async def test_documents_search_is_a_row_validated_and_forwarded_as_sent() -> None:
    """The route added as two files: a schema and a row (docs/architecture.md)."""
    router = upstream()
    sent = b'{"query": "revenue", "source": {"collection_ids": ["c1"]}, "extra": 1}'
    route = router.post("/documents/search").respond(200, json={"matches": []})
    async with proxied(router) as client:
        answer = await client.post(
            "/v1/documents/search",
            content=sent,
            headers={**AUTH, "content-type": "application/json"},
        )
        refused = await client.post("/v1/documents/search", content=b"{", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"matches": []}
    assert route.calls.last.request.content == sent
    assert refused.status_code == 400
    assert route.call_count == 1
