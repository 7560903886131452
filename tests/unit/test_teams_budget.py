"""Near a budget, each worker lets one request of the member run at a time (real SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grok_proxy.config import Settings
from grok_proxy.teams.errors import BudgetExceeded
from grok_proxy.teams.members import Limits
from grok_proxy.teams.team import Team

USAGE = {"prompt": 40, "completion": 20, "reasoning": 0, "cached": 0}


def test_near_a_budget_the_next_request_waits_for_the_one_in_flight(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings(
            _env_file=None, xai_api_key="xai-server", grok_proxy_data_dir=str(tmp_path)
        )
        team = Team(settings)
        try:
            await team.store.migrate()
            _, key = await team.store.add_member("mia", Limits(tokens_per_day=100))
            await team.reload()
            mia = team.admit(key)
            # One finished request of 60 tokens: 40 remain, so one more like it could cross.
            first = await team.check(mia, "chat/completions", "grok-4")
            assert first.lock is None  # nothing known yet about mia's request sizes
            await team.record_usage(mia, "grok-4", USAGE, first)

            ahead = await team.check(mia, "chat/completions", "grok-4")
            assert ahead.lock is not None and ahead.lock.locked()
            behind = asyncio.create_task(team.check(mia, "chat/completions", "grok-4"))
            await asyncio.sleep(0)
            assert not behind.done()  # it cannot be admitted while the one ahead is in flight
            await team.record_usage(mia, "grok-4", USAGE, ahead)  # 120 of 100 used
            # Without the turn both would have been admitted; this one sees the 120 tokens.
            with pytest.raises(BudgetExceeded):
                await behind
            assert not team.turns[mia.id].locked()
        finally:
            await team.store.aclose()

    asyncio.run(scenario())
