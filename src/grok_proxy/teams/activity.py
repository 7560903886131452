"""What the console shows beyond the daily usage: usage per minute and members' last failures.

The daily `usage` table cannot say what happened in the last hour, and nothing recorded
failed requests. Both are gathered in each worker's memory and written with the usage
batch (Team.flush, every second), so a request pays no database statement for them.
Minute rows are kept for a little more than a day; failures keep the newest
FAILURES_KEPT per member, and hold only status, code, model and time: no body, no key.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.types import Message, Scope, Send

from grok_proxy.calls.record import record_of
from grok_proxy.teams.store import USAGE_COLUMNS, Store, metadata

log = logging.getLogger("grok_proxy.teams")

usage_minutes = sa.Table(
    "usage_minutes",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    # Minutes since the epoch (UTC).
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False, default=0) for name in USAGE_COLUMNS),
)

failures = sa.Table(
    "failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("code", sa.String(64)),
    sa.Column("model", sa.String(200)),
)

# A day of minutes (the console's longest minute-based view), and an hour to spare.
MINUTES_KEPT = 25 * 60
FAILURES_KEPT = 20
# Bounds on what waits in memory while the database is away.
MAX_PENDING_MINUTES = 100_000
MAX_PENDING_FAILURES = 1_000
# Error bodies are read this far for their code; a longer body's code is not looked for.
ERROR_BODY_SCAN = 16 * 1024
MEMBER_STATE = "team_member"


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed request of a member: no body, no key."""

    member_id: str
    at: datetime
    status: int
    code: str | None
    model: str | None


class Activity:
    """One worker's per-minute usage and failures, written with each usage batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.minutes: dict[tuple[str, int, str], list[int]] = defaultdict(
            lambda: [0] * len(USAGE_COLUMNS)
        )
        self.failures: deque[Failure] = deque(maxlen=MAX_PENDING_FAILURES)
        self.pruned_minute = 0

    def count(self, member_id: str, model: str, counts: Sequence[int], now: datetime) -> None:
        """Add one request's counts (in USAGE_COLUMNS order) to its minute."""
        row = self.minutes[(member_id, int(now.timestamp()) // 60, model)]
        for index, value in enumerate(counts):
            row[index] += value

    def failed(self, member_id: str, status: int, code: str | None, model: str | None) -> None:
        """Note a failed request (kept for the console; bodies never are)."""
        code = code[:64] if code else None
        model = model[:200] if model else None
        self.failures.append(Failure(member_id, datetime.now(UTC), status, code, model))

    def watch(self, scope: Scope, send: Send) -> Send:
        """`send`, noting the answer as the member's failure when it is one (an error
        status, or a stream the proxy had to cut)."""
        return FailureWatch(self, scope, send)

    async def flush(self) -> None:
        """Write what was gathered; on failure keep it (bounded) for the next flush."""
        now_minute = int(datetime.now(UTC).timestamp()) // 60
        if self.minutes:
            batch, self.minutes = self.minutes, defaultdict(lambda: [0] * len(USAGE_COLUMNS))
            try:
                await self._write_minutes(batch)
            except BaseException:
                for key, counts in batch.items():
                    row = self.minutes[key]
                    for index, value in enumerate(counts):
                        row[index] += value
                while len(self.minutes) > MAX_PENDING_MINUTES:
                    del self.minutes[next(iter(self.minutes))]
                raise
        if self.failures:
            written = list(self.failures)
            self.failures.clear()
            try:
                await self._write_failures(written)
            except BaseException:
                self.failures.extendleft(reversed(written))
                raise
        if now_minute != self.pruned_minute:
            async with self.store.single.connect() as conn:
                await conn.execute(
                    usage_minutes.delete().where(usage_minutes.c.minute < now_minute - MINUTES_KEPT)
                )
            self.pruned_minute = now_minute

    async def _write_minutes(self, batch: dict[tuple[str, int, str], list[int]]) -> None:
        rows = [
            {
                "member_id": member_id,
                "minute": minute,
                "model": model,
                **dict(zip(USAGE_COLUMNS, counts, strict=True)),
            }
            for (member_id, minute, model), counts in batch.items()
        ]
        statement = self.store._insert(usage_minutes)
        statement = statement.on_conflict_do_update(
            index_elements=["member_id", "minute", "model"],
            set_={name: usage_minutes.c[name] + statement.excluded[name] for name in USAGE_COLUMNS},
        )
        async with self.store.single.connect() as conn:
            await conn.execute(statement, rows)

    async def _write_failures(self, written: list[Failure]) -> None:
        # A member failing a thousand times a second needs only its newest few written.
        newest: dict[str, list[Failure]] = defaultdict(list)
        for failure in reversed(written):
            if len(newest[failure.member_id]) < FAILURES_KEPT:
                newest[failure.member_id].append(failure)
        rows = [
            {
                "member_id": f.member_id,
                "at": f.at,
                "status": f.status,
                "code": f.code,
                "model": f.model,
            }
            for kept in newest.values()
            for f in reversed(kept)
        ]
        async with self.store.engine.begin() as conn:
            await conn.execute(failures.insert(), rows)
            for member_id in newest:
                # Everything older than the member's FAILURES_KEPT-th newest goes.
                cutoff = (
                    sa.select(failures.c.id)
                    .where(failures.c.member_id == member_id)
                    .order_by(failures.c.id.desc())
                    .offset(FAILURES_KEPT)
                    .limit(1)
                    .scalar_subquery()
                )
                await conn.execute(
                    failures.delete().where(
                        failures.c.member_id == member_id, failures.c.id <= cutoff
                    )
                )


def mark_member(scope: Scope, member_id: str) -> None:
    """Say whose request this is, so its failure (if it fails) is noted as that member's."""
    scope.setdefault("state", {})[MEMBER_STATE] = member_id


class FailureWatch:
    """A `send` that notes the answer as a failure of the request's member, if it is one."""

    __slots__ = ("activity", "body", "downstream", "scope", "status")

    def __init__(self, activity: Activity, scope: Scope, send: Send) -> None:
        self.activity = activity
        self.scope = scope
        self.downstream = send
        self.status = 0
        self.body = b""

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body":
            if self.status >= 400 and len(self.body) < ERROR_BODY_SCAN:
                self.body += message.get("body", b"")
            if not message.get("more_body", False):
                self._note()
        await self.downstream(message)

    def _note(self) -> None:
        member_id = self.scope.get("state", {}).get(MEMBER_STATE)
        if member_id is None:
            return  # no member behind it (a wrong key): nobody's failure
        record = record_of(self.scope)
        if self.status >= 400:
            code = error_code(self.body) or record.error_kind
        elif record.error_kind:  # a 2xx the proxy could not finish (a cut stream)
            code = record.error_kind
        else:
            return
        self.activity.failed(member_id, self.status, code, record.model)


def error_code(body: bytes) -> str | None:
    """The code of an error body: `error.code` (the proxy's envelope), Anthropic's
    `error.type`, or xAI's own top-level `code`; never its message."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        for field in ("code", "type"):
            if isinstance(error.get(field), str) and error[field]:
                return str(error[field])
    code = data.get("code")
    return code if isinstance(code, str) and code else None
