"""The console's read-only queries: usage over a window, budgets left, recent failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from grok_proxy.teams.activity import failures, usage_minutes
from grok_proxy.teams.members import Member
from grok_proxy.teams.pricing import NANOS_PER_DOLLAR
from grok_proxy.teams.store import USAGE_COLUMNS, usage
from grok_proxy.teams.team import Team

# window -> (number of bins, minutes per bin); "month" reads the daily table.
WINDOWS = {"hour": (60, 1), "day": (24, 60), "month": (30, 1440)}
MEASURES = ("requests", "tokens", "cost")
FAILURES_SHOWN = 200


@dataclass
class Totals:
    """Requests, tokens by kind and cost (billionths of a dollar) of some requests."""

    counts: list[int] = field(default_factory=lambda: [0] * len(USAGE_COLUMNS))

    def add(self, counts: Any) -> None:
        for index, value in enumerate(counts):
            self.counts[index] += int(value or 0)

    def measure(self, name: str) -> float:
        """requests, tokens (prompt + completion + reasoning, as budgets count them) or cost
        in dollars."""
        count = dict(zip(USAGE_COLUMNS, self.counts, strict=True))
        if name == "requests":
            return count["requests"]
        if name == "tokens":
            return count["prompt_tokens"] + count["completion_tokens"] + count["reasoning_tokens"]
        return count["cost_nanos"] / NANOS_PER_DOLLAR

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            name: value
            for name, value in zip(USAGE_COLUMNS, self.counts, strict=True)
            if name != "cost_nanos"
        }
        data["tokens"] = int(self.measure("tokens"))
        data["cost_usd"] = round(self.measure("cost"), 6)
        return data


@dataclass
class Usage:
    """Usage over one window: per time bin, per member, per model, per (member, model)."""

    window: str
    labels: list[str]
    bins: list[Totals]
    members: dict[str, Totals] = field(default_factory=dict)
    models: dict[str, Totals] = field(default_factory=dict)
    pairs: dict[tuple[str, str], Totals] = field(default_factory=dict)

    def add(self, index: int, member: str, model: str, counts: Any) -> None:
        self.bins[index].add(counts)
        self.members.setdefault(member, Totals()).add(counts)
        self.models.setdefault(model, Totals()).add(counts)
        self.pairs.setdefault((member, model), Totals()).add(counts)

    def rows(self) -> list[dict[str, Any]]:
        """One row per member and model, for the table and the CSV export."""
        return [
            {"member": member, "model": model, **totals.json()}
            for (member, model), totals in sorted(self.pairs.items())
        ]


async def member_names(team: Team) -> dict[str, str]:
    """Every member's name by id (database and GROK_PROXY_API_KEYS members)."""
    return {member.id: member.name for member, _keys in await team.members()}


async def usage_over(team: Team, window: str, now: datetime | None = None) -> Usage:
    """Usage in the last hour (per minute), day (per hour) or 30 days (per UTC day)."""
    now = now or datetime.now(UTC)
    count, size = WINDOWS[window]
    await team.flush()  # this worker's last second of usage, too
    names = await member_names(team)
    if window == "month":
        first = (now - timedelta(days=count - 1)).date()
        days = [(first + timedelta(days=i)).isoformat() for i in range(count)]
        report = Usage(window, [d[5:] for d in days], [Totals() for _ in days])
        query = sa.select(usage.c.member_id, usage.c.day, usage.c.model, *_sums(usage)).where(
            usage.c.day >= days[0]
        )
        query = query.group_by(usage.c.member_id, usage.c.day, usage.c.model)
        async with team.store.engine.connect() as conn:
            for member_id, day, model, *counts in (await conn.execute(query)).all():
                if day in days:
                    report.add(days.index(day), names.get(member_id, member_id), model, counts)
        return report
    last = int(now.timestamp()) // 60
    # Bins start on whole minutes or hours (the last one is the current, unfinished one).
    start = last // size * size - (count - 1) * size
    labels = [f"{datetime.fromtimestamp((start + i * size) * 60, UTC):%H:%M}" for i in range(count)]
    report = Usage(window, labels, [Totals() for _ in labels])
    table = usage_minutes
    query = sa.select(table.c.member_id, table.c.minute, table.c.model, *_sums(table)).where(
        table.c.minute >= start, table.c.minute <= last
    )
    query = query.group_by(table.c.member_id, table.c.minute, table.c.model)
    async with team.store.engine.connect() as conn:
        for member_id, minute, model, *counts in (await conn.execute(query)).all():
            index = (int(minute) - start) // size
            report.add(index, names.get(member_id, member_id), model, counts)
    return report


def _sums(table: sa.Table) -> list[Any]:
    return [sa.func.sum(table.c[name]) for name in USAGE_COLUMNS]


async def budgets(team: Team, now: datetime | None = None) -> list[dict[str, Any]]:
    """For each member with a token or dollar budget: what it used and what is left."""
    now = now or datetime.now(UTC)
    today, month = f"{now:%Y-%m-%d}", f"{now:%Y-%m}"
    members = [member for member, _keys in await team.members()]
    limited = [m for m in members if _budget_limits(m)]
    if not limited:
        return []
    await team.flush()
    query = (
        sa.select(usage.c.member_id, usage.c.day, *_sums(usage))
        .where(usage.c.day >= f"{month}-01")
        .group_by(usage.c.member_id, usage.c.day)
    )
    used: dict[tuple[str, str], Totals] = {}
    async with team.store.engine.connect() as conn:
        for member_id, day, *counts in (await conn.execute(query)).all():
            used.setdefault((member_id, "month"), Totals()).add(counts)
            if day == today:
                used.setdefault((member_id, "day"), Totals()).add(counts)
    shown = []
    for member in limited:
        for name, limit in _budget_limits(member):
            measure, _, period = name.partition("_per_")
            spent = used.get((member.id, period), Totals()).measure(
                "cost" if measure == "dollars" else "tokens"
            )
            shown.append(
                {
                    "member": member.name,
                    "budget": name,
                    "limit": limit,
                    "used": round(spent, 6),
                    "left": round(max(0.0, limit - spent), 6),
                }
            )
    return shown


def _budget_limits(member: Member) -> list[tuple[str, float]]:
    names = ("tokens_per_day", "tokens_per_month", "dollars_per_day", "dollars_per_month")
    found = [(name, getattr(member.limits, name)) for name in names]
    return [(name, float(limit)) for name, limit in found if limit is not None]


async def recent_failures(team: Team) -> list[dict[str, Any]]:
    """The newest failed requests, newest first: member, time, status, code, model."""
    await team.flush()
    names = await member_names(team)
    query = sa.select(failures).order_by(failures.c.id.desc()).limit(FAILURES_SHOWN)
    async with team.store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
            "member": names.get(row["member_id"], row["member_id"]),
            "at": _utc(row["at"]).isoformat(timespec="seconds"),
            "status": row["status"],
            "code": row["code"],
            "model": row["model"],
        }
        for row in rows
    ]


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)
