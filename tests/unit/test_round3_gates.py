"""Shared-proxy gates of issue 24 that need no running process: a browser's token while the
team database is away, gRPC fields the proxy cannot read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from xai_sdk.proto.v6 import chat_pb2

from grok_proxy.calls.errors import InvalidRequest
from grok_proxy.teams.errors import DatabaseUnavailable
from grok_proxy.teams.grpc_calls import CallGate
from grok_proxy.teams.leases import Admission
from grok_proxy.teams.members import Member
from grok_proxy.teams.ws_sessions import SessionGate, secret_caller


class DatabaseAway:
    """A team whose database does not answer (as Team.secret_caller meets it)."""

    settings = SimpleNamespace(team_client_secrets="any")

    async def secret_caller(self, token: str, fingerprint: str) -> None:
        raise OSError("connection refused")


def test_an_outage_answers_503_not_a_500() -> None:
    """Item 5: whose token it is cannot be read, so the handshake is refused with 503."""
    team: Any = DatabaseAway()
    with pytest.raises(DatabaseUnavailable) as refused:
        asyncio.run(secret_caller(team, "realtime", "token", "fp"))
    assert refused.value.status == 503


def test_a_grpc_request_with_fields_the_proxy_cannot_read_is_refused() -> None:
    """Item 1, on gRPC: a field unknown to the proxy's protos (here inside a message) could
    name what xAI reads; it is refused before any check or upstream call."""
    unknown = b"\xf8\x3f\x01"  # field 1023, a varint
    inner = chat_pb2.Message(content=[chat_pb2.Content(text="hi")]).SerializeToString()
    inner += unknown
    request = chat_pb2.GetCompletionsRequest(model="grok-4").SerializeToString()
    request += b"\x0a" + bytes([len(inner)]) + inner  # field 1 (messages), length-delimited
    team: Any = None  # never reached
    gate = CallGate(team, Member(id="m", name="m"), "/xai_api.Chat/GetCompletion")
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(gate.admit(request))
    assert "does not know" in refused.value.message


def test_relayed_grpc_metadata_loses_the_server_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 9, on gRPC: metadata echoing the server key reaches the caller without it."""
    from grok_proxy.calls import redact
    from grok_proxy.relays import grpc as grpc_relay

    monkeypatch.setattr(redact, "_server_secrets", ("xai-server-secret-1234567",))
    echoed = [("x-echo", "Bearer xai-server-secret-1234567"), ("x-id", "abc")]
    assert grpc_relay._relayable(echoed) == (("x-echo", "Bearer [redacted]"), ("x-id", "abc"))


class Ledger:
    """A team that admits every request and keeps the model each one was counted under."""

    def __init__(self) -> None:
        self.counted: list[str | None] = []

    async def require_all(self, member: Member, refs: list[tuple[str, str]]) -> None:
        return None

    async def check(self, member: Member, route: str, model: str | None) -> Admission:
        return Admission()

    async def claim(self, member: Member, kind: str, ids: list[str]) -> None:
        return None

    async def record_usage(self, member: Member, model: str | None, *args: Any) -> None:
        self.counted.append(model)


def test_a_turn_is_counted_under_the_model_that_served_it() -> None:
    """A: a Responses-mode turn naming no model runs on the URL's or the default model, not
    the previous turn's, and its usage is counted under the model the server reports."""
    ledger = Ledger()
    team: Any = ledger
    gate = SessionGate(team, Member(id="m", name="m"), "responses", None)

    async def session() -> None:
        for turn, served in (("grok-4.3", "grok-4.3"), (None, "grok-4")):
            event = {"type": "response.create", "input": "hi", "model": turn}
            assert await gate.from_caller(orjson.dumps(event)) is None
            done = {"type": "response.completed", "response": {"id": "r", "model": served}}
            await gate.from_upstream(orjson.dumps(done).decode())

    asyncio.run(session())
    assert ledger.counted == ["grok-4.3", "grok-4"]
