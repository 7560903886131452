"""Limits from per-worker leases on the shared counters (real SQLite, no process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from grok_proxy.config import Settings
from grok_proxy.teams.errors import BudgetExceeded, RateLimited
from grok_proxy.teams.leases import lease_size
from grok_proxy.teams.members import Limits, Member
from grok_proxy.teams.store import _alembic_config, counters, windows
from grok_proxy.teams.team import Team

USAGE = {"prompt": 40, "completion": 20, "reasoning": 0, "cached": 0}


@pytest.mark.parametrize(
    ("need", "demand", "remaining", "size"),
    [
        (1, 0, 0, 0),  # nothing remains: nothing to take
        (1, 0, -5, 0),  # overshot by requests in flight: still nothing
        (1, 0, 100, 1),  # no demand seen yet: one request's worth
        (1, 30, 100, 30),  # the member's recent demand, when well within the rest
        (1, 500, 100, 50),  # never more than half of what remains
        (1, 500, 3, 1),  # near the limit: single requests, as precise as one statement each
        (1, 500, 1, 1),  # the last one
        (60, 0, 100, 60),  # at least the estimate of one request
        (60, 0, 40, 40),  # but never more than remains (the rest runs one at a time)
        (0, 0, 10, 1),  # at least one unit
    ],
)
def test_lease_size(need: int, demand: int, remaining: int, size: int) -> None:
    assert lease_size(need, demand, remaining) == size


@asynccontextmanager
async def team_on(tmp_path: Path) -> AsyncIterator[Team]:
    """A worker's Team on the SQLite file in `tmp_path` (several may share one file)."""
    settings = Settings(_env_file=None, xai_api_key="xai-server", grok_proxy_data_dir=str(tmp_path))
    team = Team(settings)
    try:
        await team.store.migrate()
        await team.reload()
        yield team
    finally:
        await team.store.aclose()


async def add(team: Team, name: str, limits: Limits) -> Member:
    _, key = await team.store.add_member(name, limits)
    await team.reload()
    return team.admit(key)


def test_near_a_budget_the_next_request_waits_for_the_one_in_flight(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as team:
            mia = await add(team, "mia", Limits(tokens_per_day=100))
            # One finished request of 60 tokens: 40 remain, less than one more like it.
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
            assert not team.leases.turns[mia.id].locked()

    asyncio.run(scenario())


def test_a_workers_own_usage_counts_for_its_next_check_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as team:
            dan = await add(team, "dan", Limits(tokens_per_day=1))
            admission = await team.check(dan, "chat/completions", "grok-4")
            await team.record_usage(dan, "grok-4", USAGE, admission)
            # No flush in between: the usage is known to the next check synchronously.
            with pytest.raises(BudgetExceeded):
                await team.check(dan, "chat/completions", "grok-4")

    asyncio.run(scenario())


def test_two_workers_on_one_database_never_admit_more_than_the_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as one, team_on(tmp_path) as two:
            rita = await add(one, "rita", Limits(rpm=25))
            await two.reload()

            async def attempt(team: Team) -> bool:
                try:
                    admission = await team.check(rita, "chat/completions", "grok-4")
                except RateLimited:
                    return False
                await team.record_usage(rita, "grok-4", None, admission)
                return True

            for _ in range(2):  # a minute boundary inside the burst opens a new window
                minute = windows(datetime.now(UTC))[0]
                # Interleaved, concurrent: each worker serves from leases, takes new ones.
                admitted = sum(await asyncio.gather(*(attempt(t) for t in (one, two) * 40)))
                # Unused leases go back: the counter then holds what was admitted.
                await one.flush(final=True)
                await two.flush(final=True)
                if windows(datetime.now(UTC))[0] == minute:
                    break
            # Leases come out of one conditional counter: never more than the limit, and
            # none stranded while both workers still had requests.
            assert admitted == 25
            async with one.store.engine.connect() as conn:
                taken = await conn.scalar(
                    sa.select(counters.c.requests).where(
                        counters.c.member_id == rita.id, counters.c.period == minute
                    )
                )
            assert taken == 25

    asyncio.run(scenario())


def test_day_and_month_budgets_hold_after_the_flush_that_prunes_old_minutes(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as team, team_on(tmp_path) as other:
            hal = await add(team, "hal", Limits(tokens_per_day=1, dollars_per_month=0.000001))
            await other.reload()
            minute, day, month = windows(datetime.now(UTC))
            stale_minute = f"m{int(minute[1:]) - 5}"
            await team.store.charge(hal.id, stale_minute, "requests", 1)
            # 60 tokens, $0.000076 as xAI states it: over both budgets with one request.
            admission = await team.check(hal, "chat/completions", "grok-4")
            await team.record_usage(hal, "grok-4", {**USAGE, "cost_ticks": 760_000}, admission)
            # The every-second flush: charges the usage to the counters, prunes old minutes.
            await team.flush()
            query = sa.select(counters.c.period, counters.c.tokens, counters.c.cost_nanos)
            async with team.store.engine.connect() as conn:
                rows = (await conn.execute(query.where(counters.c.member_id == hal.id))).all()
            # SQLite's LIKE ignores case: pruning minutes by "m%" once wiped the month too.
            assert sorted(rows) == [(month, 0, 76_000), (day, 60, 0)]
            # Neither this worker nor another one lets hal spend more.
            team.leases.forget_exhausted()  # as the reload every TEAM_REFRESH_SECONDS does
            for worker in (team, other):
                with pytest.raises(BudgetExceeded):
                    await worker.check(hal, "chat/completions", "grok-4")

    asyncio.run(scenario())


def locked(*_: object) -> None:
    """A counter statement that SQLite gave up on (its busy timeout passed)."""
    raise sa.exc.OperationalError("INSERT INTO counters", {}, Exception("database is locked"))


def test_with_the_database_away_a_member_known_to_be_over_budget_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as team:
            dan = await add(team, "dan", Limits(tokens_per_day=1))
            roomy = await add(team, "roomy", Limits(tokens_per_day=10**9))
            for member in (dan, roomy):
                admission = await team.check(member, "chat/completions", "grok-4")
                await team.record_usage(member, "grok-4", USAGE, admission)
            monkeypatch.setattr(team.store, "charge", locked)
            monkeypatch.setattr(team.store, "lease", locked)
            # dan's 60 tokens are owed to the counter: the statement fails, yet this worker
            # knows dan used more than the budget, so no database is needed to refuse.
            with pytest.raises(BudgetExceeded):
                await team.check(dan, "chat/completions", "grok-4")
            assert team.db_down
            with pytest.raises(BudgetExceeded):
                await team.check(dan, "chat/completions", "grok-4")
            # Limits still fail open for what only the database could tell (docs/teams.md).
            admission = await team.check(roomy, "chat/completions", "grok-4")
            await team.record_usage(roomy, "grok-4", USAGE, admission)

    asyncio.run(scenario())


def test_with_the_database_away_a_lease_given_back_is_not_taken_for_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with team_on(tmp_path) as team:
            una = await add(team, "una", Limits(tokens_per_day=1))
            # A request that used nothing (refused upstream): its one-token lease goes back.
            admission = await team.check(una, "chat/completions", "grok-4")
            await team.record_usage(una, "grok-4", None, admission)
            await team.flush(final=True)
            monkeypatch.setattr(team.store, "lease", locked)
            admission = await team.check(una, "chat/completions", "grok-4")
            assert team.db_down  # admitted because the limit fails open, not refused
            await team.record_usage(una, "grok-4", None, admission)

    asyncio.run(scenario())


def test_upgrading_raises_this_months_counters_to_the_usage_recorded(tmp_path: Path) -> None:
    """Revision 0004 repairs the month counters the old pruning wiped on SQLite."""

    def back_to_0003(connection: sa.Connection) -> None:
        from alembic import command

        command.downgrade(_alembic_config(connection), "0003")

    async def scenario() -> None:
        async with team_on(tmp_path) as team:
            store = team.store
            wiped, above, fresh = [
                (await add(team, name, Limits(tokens_per_month=100))).id
                for name in ("wiped", "above", "fresh")
            ]
            async with store.engine.connect() as conn:
                await conn.run_sync(back_to_0003)
                await conn.commit()
            _, day, month = windows(datetime.now(UTC))
            last_year = f"{int(day[1:5]) - 1}{day[5:]}"
            zero = {"requests": 1, "cached_tokens": 0, "server_side_tools": 0, "sources": 0}
            used = {"prompt_tokens": 40, "completion_tokens": 15, "reasoning_tokens": 5}
            await store.add_usage(
                [
                    {
                        "member_id": member,
                        "day": when,
                        "model": "grok-4",
                        **zero,
                        **used,
                        "cost_nanos": 900,
                    }
                    for member in (wiped, above, fresh)
                    for when in (day[1:], last_year)
                ]
            )
            await store.charge(wiped, month, "tokens", 7)  # taken since the last flush
            await store.charge(above, month, "tokens", 80)  # leases beyond what was used
            await store.charge(above, month, "cost_nanos", 5000)
            await store.migrate()
            assert await store.revision() == "0004"
            query = sa.select(counters.c.member_id, counters.c.tokens, counters.c.cost_nanos)
            async with store.engine.connect() as conn:
                rows = (await conn.execute(query.where(counters.c.period == month))).all()
            # This month's 60 tokens and 900 nanos (last year's row does not count), never
            # less than what was taken already.
            assert sorted(rows) == sorted([(wiped, 60, 900), (above, 80, 5000), (fresh, 60, 900)])

    asyncio.run(scenario())
