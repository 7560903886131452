"""The team's tables and every query on them (SQLAlchemy core, SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from grok_proxy.teams.members import (
    Limits,
    Member,
    check_member_name,
    hash_key,
    new_access_key,
)

metadata = sa.MetaData()

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("limits", sa.Text, nullable=False, default="{}"),
    sa.Column("xai_key_env", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    # SHA-256 of the key, hex: the key itself is never stored.
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("member_id", sa.String(40), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("object_id", sa.String(300), primary_key=True),
    sa.Column("member_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False, default=0),
    # Billionths of a dollar: integer sums stay exact.
    sa.Column("cost_nanos", sa.BigInteger, nullable=False, default=0),
    # Billed per use besides tokens (xAI's num_server_side_tools_used, num_sources_used).
    sa.Column("server_side_tools", sa.BigInteger, nullable=False, default=0),
    sa.Column("sources", sa.BigInteger, nullable=False, default=0),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    # "m<epoch minute>", "d<YYYY-MM-DD>" or "M<YYYY-MM>".
    sa.Column("period", sa.String(16), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cost_nanos", sa.BigInteger, nullable=False, default=0),
)

USAGE_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_nanos",
    "server_side_tools",
    "sources",
)

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in MIGRATIONS (a unit test checks): a database already there is
# started without importing Alembic, which costs more start-up time than the rest.
HEAD_REVISION = "0004"
# Longest wait for a connection, a lock or a statement.
DB_TIMEOUT_SECONDS = 5.0
# Any fixed number: PostgreSQL serializes concurrent migrations on this advisory lock.
MIGRATION_LOCK = 1_700_017


def engine_url(database_url: str, data_dir: str) -> str:
    """The async driver URL: DATABASE_URL when set, else a SQLite file in the data directory."""
    if not database_url:
        return f"sqlite+aiosqlite:///{Path(data_dir).resolve() / 'teams.db'}"
    scheme, sep, rest = database_url.partition("://")
    drivers = {
        "postgres": "postgresql+asyncpg",
        "postgresql": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
    }
    return f"{drivers.get(scheme, scheme)}{sep}{rest}"


def windows(now: datetime) -> tuple[str, str, str]:
    """The minute, day and month counter windows `now` falls in (UTC)."""
    minute = int(now.timestamp()) // 60
    if now.tzinfo is None:  # a naive time is taken as UTC's wall clock, as it reads
        return f"m{minute}", f"d{now:%Y-%m-%d}", f"M{now:%Y-%m}"
    return _windows_of(minute)


@functools.lru_cache(maxsize=4)
def _windows_of(minute: int) -> tuple[str, str, str]:
    # Every limited request asks twice; formatting dates was its largest CPU cost.
    start = datetime.fromtimestamp(minute * 60, UTC)
    return f"m{minute}", f"d{start:%Y-%m-%d}", f"M{start:%Y-%m}"


@dataclass(frozen=True, slots=True)
class Directory:
    """Every member and key, as loaded into each worker's memory."""

    members: dict[str, Member]
    keys: dict[str, str]  # key hash -> member id


class NameTaken(ValueError):
    """A member with this name exists already."""


class NoSuchMember(LookupError):
    """No member has this name."""


class Store:
    """One database connection pool and the queries the team runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {}
        if self.sqlite:
            # Writers in other processes hold the file's lock for milliseconds: wait for it.
            options["connect_args"] = {"timeout": DB_TIMEOUT_SECONDS}
        else:
            # An unreachable database must fail fast: requests then go on without it.
            options.update(
                pool_size=5,
                max_overflow=10,
                pool_timeout=DB_TIMEOUT_SECONDS,
                connect_args={"timeout": DB_TIMEOUT_SECONDS, "command_timeout": DB_TIMEOUT_SECONDS},
            )
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # Every hot query is one statement, atomic on its own: without BEGIN and COMMIT
        # around it, it costs one round trip instead of three.
        self.single: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    async def aclose(self) -> None:
        await self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ON CONFLICT, for this database."""
        return (sqlite.insert if self.sqlite else postgresql.insert)(table)

    # schema
    async def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes start at once."""
        if await self._at_head():
            return
        if self.sqlite:
            path = Path(self.url.split("///", 1)[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = await asyncio.to_thread(_locked, Path(f"{path}.lock"))
            try:
                await self._upgrade()
            finally:
                lock.close()  # closing releases the lock
        else:
            await self._upgrade()

    async def _at_head(self) -> bool:
        """Whether the database exists and is at HEAD_REVISION already."""
        if self.sqlite and not await asyncio.to_thread(Path(self.url.split("///", 1)[1]).exists):
            return False
        try:
            async with self.engine.connect() as conn:
                found = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        except sa.exc.DBAPIError:
            return False  # no version table yet
        return bool(found == HEAD_REVISION)

    async def _upgrade(self) -> None:
        async with self.engine.connect() as conn:
            await conn.run_sync(_upgrade_to_head)
            await conn.commit()

    async def revision(self) -> str | None:
        """The schema revision in the database (None before the first migration)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    # members
    async def directory(self) -> Directory:
        """All members and keys."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(members))).mappings().all()
            keys = (await conn.execute(sa.select(access_keys))).mappings().all()
        found = {row["id"]: _member(row) for row in rows}
        return Directory(
            found, {key["key_hash"]: key["member_id"] for key in keys if key["member_id"] in found}
        )

    async def add_member(
        self, name: str, limits: Limits, xai_key_env: str | None = None
    ) -> tuple[Member, str]:
        """A new member and its first access key (the only time the key exists in clear)."""
        check_member_name(name)
        member = Member(secrets.token_hex(8), name, limits, xai_key_env=xai_key_env)
        key = new_access_key()
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            if await self._member_row(conn, name) is not None:
                raise NameTaken(name)
            await conn.execute(
                members.insert().values(
                    id=member.id,
                    name=name,
                    disabled=False,
                    limits=orjson.dumps(limits.to_json()).decode(),
                    xai_key_env=xai_key_env,
                    created_at=now,
                )
            )
            await conn.execute(
                access_keys.insert().values(
                    key_hash=hash_key(key), member_id=member.id, created_at=now
                )
            )
        return member, key

    async def _member_row(self, conn: AsyncConnection, name: str) -> Any:
        return (
            (await conn.execute(sa.select(members).where(members.c.name == name)))
            .mappings()
            .first()
        )

    async def member(self, name: str) -> Member:
        """The member called `name`."""
        async with self.engine.connect() as conn:
            row = await self._member_row(conn, name)
        if row is None:
            raise NoSuchMember(name)
        return _member(row)

    async def list_members(self) -> list[tuple[Member, int]]:
        """Every member with its number of access keys."""
        async with self.engine.connect() as conn:
            query = sa.select(members).order_by(members.c.name)
            rows = (await conn.execute(query)).mappings().all()
            per_member = sa.select(access_keys.c.member_id, sa.func.count()).group_by(
                access_keys.c.member_id
            )
            counts: dict[str, int] = {
                row[0]: int(row[1]) for row in (await conn.execute(per_member)).all()
            }
        return [(_member(row), int(counts.get(row["id"], 0))) for row in rows]

    async def set_disabled(self, name: str, disabled: bool) -> Member:
        """Disable (or enable again) a member; its keys stop working."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                members.update().where(members.c.name == name).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise NoSuchMember(name)
            row = await self._member_row(conn, name)
        return _member(row)

    async def revoke_keys(self, name: str) -> int:
        """Every access key of the member stops working, and none replaces them."""
        async with self.engine.begin() as conn:
            row = await self._member_row(conn, name)
            if row is None:
                raise NoSuchMember(name)
            result = await conn.execute(
                access_keys.delete().where(access_keys.c.member_id == row["id"])
            )
        return int(result.rowcount or 0)

    async def delete_member(self, name: str) -> None:
        """The member and its keys are gone; its name may be given to someone new.

        Its usage stays (by its id, for the account's totals), and the objects it created
        stay its: nobody else, a new member of the same name included, reaches them.
        """
        async with self.engine.begin() as conn:
            row = await self._member_row(conn, name)
            if row is None:
                raise NoSuchMember(name)
            await conn.execute(access_keys.delete().where(access_keys.c.member_id == row["id"]))
            await conn.execute(members.delete().where(members.c.id == row["id"]))

    async def rotate_key(self, name: str, keep_old: bool = False) -> str:
        """A new access key for the member; the old ones stop working unless `keep_old`."""
        key = new_access_key()
        async with self.engine.begin() as conn:
            row = await self._member_row(conn, name)
            if row is None:
                raise NoSuchMember(name)
            if not keep_old:
                await conn.execute(access_keys.delete().where(access_keys.c.member_id == row["id"]))
            await conn.execute(
                access_keys.insert().values(
                    key_hash=hash_key(key), member_id=row["id"], created_at=datetime.now(UTC)
                )
            )
        return key

    async def set_limits(self, name: str, changes: dict[str, Any]) -> Member:
        """Change some limits of a member (None removes a limit)."""
        async with self.engine.begin() as conn:
            row = await self._member_row(conn, name)
            if row is None:
                raise NoSuchMember(name)
            limits = _member(row).limits.updated(changes)
            await conn.execute(
                members.update()
                .where(members.c.id == row["id"])
                .values(limits=orjson.dumps(limits.to_json()).decode())
            )
            row = await self._member_row(conn, name)
        return _member(row)

    # ownership
    async def claim(self, member_id: str, kind: str, object_ids: Iterable[str]) -> None:
        """Record that the member created these objects (the first claim wins)."""
        now = datetime.now(UTC)
        rows = [
            {"kind": kind, "object_id": object_id, "member_id": member_id, "created_at": now}
            for object_id in object_ids
        ]
        if not rows:
            return
        statement = self._insert(objects).on_conflict_do_nothing(
            index_elements=["kind", "object_id"]
        )
        async with self.single.connect() as conn:
            await conn.execute(statement, rows)

    async def owner(self, kind: str, object_id: str) -> str | None:
        """The id of the member that created this object through the proxy, if one did."""
        query = sa.select(objects.c.member_id).where(
            objects.c.kind == kind, objects.c.object_id == object_id
        )
        async with self.single.connect() as conn:
            member_id: str | None = (await conn.execute(query)).scalar()
            return member_id

    async def owned(self, member_id: str, kind: str, object_ids: list[str]) -> set[str]:
        """Which of `object_ids` the member owns."""
        if not object_ids:
            return set()
        query = sa.select(objects.c.object_id).where(
            objects.c.kind == kind,
            objects.c.member_id == member_id,
            objects.c.object_id.in_(object_ids),
        )
        async with self.single.connect() as conn:
            return set((await conn.execute(query)).scalars().all())

    # limits (teams/leases.py): a counter holds what replicas have taken from the limit
    async def lease(
        self, member_id: str, period: str, measure: str, amount: int, limit: int
    ) -> tuple[int, int]:
        """Take `amount` of `measure` in the member's window if the counter stays within
        `limit`: (what was taken, `amount` or 0; the counter afterwards).

        One atomic conditional statement, so replicas sharing the database never take more
        than `limit` between them. The caller keeps `amount` within `limit` (a new row is
        inserted as it is).
        """
        column = counters.c[measure]
        values: dict[str, Any] = {
            "member_id": member_id,
            "period": period,
            "requests": 0,
            "tokens": 0,
            "cost_nanos": 0,
        }
        values[measure] = amount
        statement = (
            self._insert(counters)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["member_id", "period"],
                set_={measure: column + amount},
                where=column + amount <= limit,
            )
            .returning(column)
        )
        async with self.single.connect() as conn:
            row = (await conn.execute(statement)).first()
            if row is not None:
                return amount, int(row[0])
            # Refused: the counter as it is now sizes the caller's next, smaller attempt.
            found = await conn.scalar(
                sa.select(column).where(
                    counters.c.member_id == member_id, counters.c.period == period
                )
            )
        return 0, int(found or 0)

    async def charge(self, member_id: str, period: str, measure: str, amount: int) -> int:
        """Add `amount` (used beyond a lease) to the member's window; the counter afterwards."""
        values: dict[str, Any] = {
            "member_id": member_id,
            "period": period,
            "requests": 0,
            "tokens": 0,
            "cost_nanos": 0,
        }
        values[measure] = amount
        column = counters.c[measure]
        statement = (
            self._insert(counters)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["member_id", "period"], set_={measure: column + amount}
            )
            .returning(column)
        )
        async with self.single.connect() as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def adjust_counters(self, rows: list[dict[str, int | str]]) -> None:
        """Add each row's requests, tokens and cost (negative: a lease given back) to its
        window; one row per member and window."""
        if not rows:
            return
        statement = self._insert(counters)
        statement = statement.on_conflict_do_update(
            index_elements=["member_id", "period"],
            set_={
                name: counters.c[name] + statement.excluded[name]
                for name in ("requests", "tokens", "cost_nanos")
            },
        )
        async with self.single.connect() as conn:
            await conn.execute(statement, rows)

    async def prune_counters(self, before_minute: int) -> None:
        """Drop minute windows older than `before_minute` (day and month windows stay)."""
        # Not `LIKE 'm%'`: SQLite's LIKE ignores case, so it matched the month windows
        # ("M2026-12") too and wiped every monthly budget's counter on each flush. An
        # equality compares exactly on both databases.
        minute_window = sa.func.substr(counters.c.period, 1, 1) == "m"
        async with self.single.connect() as conn:
            await conn.execute(
                counters.delete().where(minute_window, counters.c.period < f"m{before_minute}")
            )

    # usage
    async def add_usage(self, rows: list[dict[str, Any]]) -> None:
        """Add aggregated usage rows (member, day, model and the USAGE_COLUMNS counts)."""
        if not rows:
            return
        statement = self._insert(usage)
        statement = statement.on_conflict_do_update(
            index_elements=["member_id", "day", "model"],
            set_={name: usage.c[name] + statement.excluded[name] for name in USAGE_COLUMNS},
        )
        async with self.single.connect() as conn:
            await conn.execute(statement, rows)

    async def usage_report(
        self, since: str | None = None, until: str | None = None, member_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Usage per member, model and day, oldest first."""
        query = sa.select(usage, members.c.name).select_from(
            usage.outerjoin(members, members.c.id == usage.c.member_id)
        )
        if since:
            query = query.where(usage.c.day >= since)
        if until:
            query = query.where(usage.c.day <= until)
        if member_id:
            query = query.where(usage.c.member_id == member_id)
        query = query.order_by(usage.c.day, usage.c.member_id, usage.c.model)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        # Column names come as quoted_name (a str subclass); JSON encoders want plain str.
        return [{str(name): value for name, value in row.items()} for row in rows]


def raise_month_counters_to_usage(connection: sa.Connection, now: datetime) -> None:
    """Raise each member's counter of the month of `now` to the tokens and cost its usage
    rows say were used this month, where it holds less (run by migration 0004).

    Before it, every flush on SQLite deleted the month windows (see prune_counters), so
    a month's counters there held only what had been taken since the last flush.
    """
    month = f"{now:%Y-%m}"
    used = sa.select(
        usage.c.member_id,
        sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens + usage.c.reasoning_tokens),
        sa.func.sum(usage.c.cost_nanos),
    )
    used = used.where(usage.c.day.startswith(f"{month}-")).group_by(usage.c.member_id)
    period = f"M{month}"
    taken = {
        row.member_id: (int(row.tokens), int(row.cost_nanos))
        for row in connection.execute(sa.select(counters).where(counters.c.period == period))
    }
    for row in connection.execute(used).all():
        member_id, tokens, nanos = row[0], int(row[1] or 0), int(row[2] or 0)
        if member_id not in taken:
            connection.execute(
                counters.insert().values(
                    member_id=member_id, period=period, requests=0, tokens=tokens, cost_nanos=nanos
                )
            )
            continue
        held_tokens, held_nanos = taken[member_id]
        if tokens > held_tokens or nanos > held_nanos:
            connection.execute(
                counters.update()
                .where(counters.c.member_id == member_id, counters.c.period == period)
                .values(tokens=max(tokens, held_tokens), cost_nanos=max(nanos, held_nanos))
            )


def _member(row: Any) -> Member:
    return Member(
        id=row["id"],
        name=row["name"],
        limits=Limits.from_json(orjson.loads(row["limits"] or "{}")),
        disabled=bool(row["disabled"]),
        xai_key_env=row["xai_key_env"],
    )


def _locked(path: Path) -> IO[str]:
    """`path` opened and exclusively locked: one process migrates a SQLite file at a time."""
    lock = path.open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one process writes; several workers share the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(DB_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: sa.Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        # Held until commit: a second replica starting now waits, then finds nothing to do.
        connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    command.upgrade(_alembic_config(connection), "head")


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
