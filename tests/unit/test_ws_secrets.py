"""A browser's ephemeral token on a shared proxy while the team database is away."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from grok_proxy.teams.errors import DatabaseUnavailable
from grok_proxy.teams.ws_sessions import secret_caller


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
