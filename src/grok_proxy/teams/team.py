"""One team per worker: who may call, what they own, what they used, what they may still use.

Protocol-neutral: the HTTP gate (gate.py) calls it today; a WebSocket or gRPC relay asks
the same questions (`admit`, `check`, `record_usage`, `claim`, `owns`) with what its own
framing carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from sqlalchemy.exc import SQLAlchemyError

from grok_proxy.calls.auth import Caller, CallerAuth
from grok_proxy.calls.client import HttpClient
from grok_proxy.calls.errors import MissingApiKey
from grok_proxy.calls.redact import key_fingerprint
from grok_proxy.calls.transport import BodyTooLarge, UpstreamFailure
from grok_proxy.calls.usage import TICKS_PER_NANO
from grok_proxy.calls.usage import tokens as usage_tokens
from grok_proxy.config import Settings
from grok_proxy.observability import metrics
from grok_proxy.teams.activity import Activity
from grok_proxy.teams.errors import (
    DatabaseUnavailable,
    NotAllowed,
    NoUpstreamKey,
    ObjectNotFound,
)
from grok_proxy.teams.leases import Admission, Leases
from grok_proxy.teams.members import Member, hash_key, settings_member
from grok_proxy.teams.pricing import NANOS_PER_DOLLAR, Prices, from_language_models, overrides
from grok_proxy.teams.scope import Decision, classify
from grok_proxy.teams.store import USAGE_COLUMNS, Directory, Store, engine_url, windows

# Admission is defined with the leases it draws on; the relays import it from here.
__all__ = ["DB_ERRORS", "Admission", "MemberCaller", "Team", "TeamAuth", "build_store"]

log = logging.getLogger("grok_proxy.teams")

# Failures that mean "the database is not answering", as opposed to bugs.
DB_ERRORS = (SQLAlchemyError, OSError, asyncio.TimeoutError)
USAGE_FLUSH_SECONDS = 1.0
PRICES_REFRESH_SECONDS = 3600.0
# /language-models is a few kilobytes per model; more than this is not a price list.
PRICES_BODY_LIMIT = 8 * 1024 * 1024
# Unwritten usage rows kept through a database outage; beyond this the oldest are dropped.
MAX_PENDING_ROWS = 100_000
# Routes whose streams end with their usage: one that ends without it is charged an estimate.
REPORTS_USAGE = frozenset({"chat/completions", "completions", "responses", "messages"})
# Request fields that bound how many tokens an answer may have.
OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# The object kind of ephemeral WebSocket tokens (see scope.CREATES).
CLIENT_SECRET = "client_secret"  # noqa: S105 - an object kind, not a secret


def build_store(settings: Settings) -> Store:
    """The store the settings name (no connection is opened yet)."""
    database_url = (
        settings.teams.database_url.get_secret_value() if settings.teams.database_url else ""
    )
    return Store(engine_url(database_url, settings.teams.data_dir))


class Team:
    """The members, limits, ownership and usage of one shared proxy, seen from one worker."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or build_store(settings)
        self.server_key = (
            settings.access.server_key.get_secret_value() if settings.access.server_key else ""
        )
        self.prices = Prices(overrides(settings.teams.model_prices))
        # Members from GROK_PROXY_API_KEYS, by key hash: they need no database row.
        self.settings_keys = {
            hash_key(key): settings_member(key) for key in settings.access.api_keys
        }
        self.directory = Directory({}, {})
        self.pending: dict[tuple[str, str, str], list[int]] = defaultdict(
            lambda: [0] * len(USAGE_COLUMNS)
        )
        self.pending_claims: dict[tuple[str, str], str] = {}
        # This worker's slices of the members' limits (no statement per request).
        self.leases = Leases(self.store)
        # Usage per minute and members' failures, for the console (teams/activity.py).
        self.activity = Activity(self.store)
        self.flushing = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []
        self.db_down = False

    def caller_auth(self) -> TeamAuth:
        """The CallerAuth every route uses in shared mode: member keys in, the account's out."""
        return TeamAuth(self.settings, self)

    # lifecycle
    async def start(self, client: HttpClient) -> None:
        """Migrate the schema, load the members, and start the background loops.

        `client` is the worker's upstream client: prices are read with the same proxies,
        trust and timeouts as every forwarded request.
        """
        self.client = client
        await self.store.migrate()
        await self.reload()
        # Before the first request, so its cost is known; bounded by the connect timeout.
        await self.fetch_prices()
        self.tasks = [
            asyncio.create_task(self._every(self.settings.teams.refresh_seconds, self.reload)),
            asyncio.create_task(self._every(USAGE_FLUSH_SECONDS, self.flush)),
            asyncio.create_task(self._every(PRICES_REFRESH_SECONDS, self.fetch_prices)),
        ]

    async def aclose(self) -> None:
        """Stop the loops and write what is still pending."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush(final=True)
        except DB_ERRORS as exc:
            log.warning(
                "team database unreachable at shutdown (%s): usage of %s member-days lost",
                type(exc).__name__,
                len(self.pending),
            )
        await self.store.aclose()

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except DB_ERRORS as exc:
                self._database_failed(exc)
            except Exception:
                log.exception("team background job %s failed", job.__name__)

    def _database_failed(self, exc: BaseException) -> None:
        if not self.db_down:
            log.warning("team database unreachable (%s): limits fail open", type(exc).__name__)
        self.db_down = True

    async def reload(self) -> None:
        """Reload members and keys (other workers and the CLI change them)."""
        self.directory = await self.store.directory()
        # A limit may have been raised, or another replica may have given a lease back.
        self.leases.forget_exhausted()
        if self.db_down:
            log.warning("team database reachable again")
            self.db_down = False

    async def fetch_prices(self) -> None:
        """Prices from the upstream's /language-models, with the server's key."""
        if not self.server_key:
            return
        url = f"{self.settings.upstream.effective_base_url}/language-models"
        headers = [("authorization", f"Bearer {self.server_key}")]
        try:
            async with asyncio.timeout(self.settings.upstream.connect_timeout):
                answer = await self.client.send("GET", url, headers, None)
                content = await answer.read(PRICES_BODY_LIMIT)
            if answer.status != 200:
                raise ValueError(f"status {answer.status}")
            self.prices.published = from_language_models(orjson.loads(content))
        except (UpstreamFailure, BodyTooLarge, TimeoutError, ValueError) as exc:
            log.warning("could not read prices from %s: %s", url, type(exc).__name__)

    # who is calling
    def admit(self, presented: str | None, where: str = "an `Authorization` header") -> Member:
        """The member behind an access key; 401 when there is none or it is disabled."""
        if not presented:
            raise MissingApiKey(f"No API key provided. Send your access key in {where}.")
        hashed = hash_key(presented)
        member = self.settings_keys.get(hashed)
        if member is None:
            member_id = self.directory.keys.get(hashed)
            member = self.directory.members.get(member_id) if member_id else None
        # The lookup is by hash, so its timing says nothing about any stored key's bytes.
        if member is None:
            raise MissingApiKey(
                "The API key is not one of this proxy's access keys.", code="invalid_api_key"
            )
        return _enabled(member)

    def upstream_key(self, member: Member) -> str:
        """The xAI key this member's requests go upstream with."""
        if member.xai_key_env:
            own = os.environ.get(member.xai_key_env, "")
            if own:
                return own
        if not self.server_key:
            raise NoUpstreamKey(
                "This proxy has no xAI key for this member: set XAI_API_KEY, or the member's "
                f"own key in ${member.xai_key_env or '<its xai_key_env>'}."
            )
        return self.server_key

    def scope_path(self, method: str, route: str) -> Decision:
        """What the HTTP layer does with this path in shared mode (see scope.py)."""
        return classify(method, route)

    # limits
    async def check(
        self,
        member: Member,
        route: str,
        model: str | None,
        *,
        deferred: bool = False,
        body: Any = None,
    ) -> Admission:
        """Raise before anything goes upstream when the member may not make this request.

        The Admission goes back with `record_usage` (or its `release`): it holds the
        request's estimate set aside from this worker's leases and, near a limit, the
        member's turn, so each worker has at most one such request in flight.
        `deferred`: a chat completion whose answer (and usage) comes later. `body`: the
        request body as parsed once by the caller's gate, whose `max_tokens` (or
        `max_completion_tokens`, `max_output_tokens`) a member with a budget reserves
        before it is admitted.
        """
        limits = member.limits
        if not limits.allows_route(route):
            raise NotAllowed(f"Member {member.name} may not use /{route} on this proxy.")
        if limits.metered and (deferred or route == "batches" or route.startswith("batches/")):
            # Their usage is known only long after admission, if ever through the proxy
            # (a batch runs at xAI): a token or dollar budget could not hold.
            what = "Deferred completions" if deferred else "Batches"
            raise NotAllowed(
                f"{what} are not available to member {member.name}: its token or dollar "
                "budget could not be enforced on them (docs/teams.md).",
                code="budget_not_enforceable",
            )
        if model is not None and not limits.allows_model(model):
            raise NotAllowed(
                f"Member {member.name} may not use model {model} on this proxy.",
                code="model_not_allowed",
                param="model",
            )
        admission = Admission(reports_usage=route in REPORTS_USAGE)
        if not limits.counted:
            return admission
        now = datetime.now(UTC)
        names = windows(now)
        if self.db_down:
            # While the database is down (the reload loop notices its return), limits fail
            # open without each request waiting for a connection timeout first, except
            # where this worker knows without it that the member has nothing left.
            self.leases.refuse_known_over(member, names, now)
            return admission
        try:
            # From this worker's leases in memory; a statement only when one runs out.
            declared = self.declared(model, body) if limits.metered else None
            await self.leases.admit(member, names, now, admission, declared)
        except DB_ERRORS as exc:
            # Refusing every request while the database is away would stop the whole team;
            # the limits are a budget guard, not an authorization. Documented in docs/teams.md.
            admission.release()
            self._database_failed(exc)
            self.leases.refuse_known_over(member, names, now)
        except BaseException:
            admission.release()
            raise
        return admission

    async def record_usage(
        self,
        member: Member,
        model: str | None,
        usage: dict[str, int] | None,
        admission: Admission | None = None,
        *,
        streamed: bool = False,
        relayed: int = 0,
    ) -> None:
        """Count one finished request: per member, model and day, and in the limit windows.

        `streamed`: a stream was relayed (xAI accepted the request and bills what it
        generated); without usage (cut, or the caller hung up first) it is charged an estimate,
        at least a token for each of the `relayed` events the caller received.
        """
        if usage is None and streamed and admission is not None and admission.reports_usage:
            usage = self.estimate(member, relayed)
            log.info("stream of member %s ended without usage: charged %s", member.name, usage)
        try:
            await self._record_usage(member, model, usage)
        finally:
            if admission is not None:
                admission.release()

    def declared(self, model: str | None, data: Any) -> tuple[int, int] | None:
        """The tokens (and their nanos at the table's price) a request may generate by its
        own limit; None when it names none."""
        if not isinstance(data, dict):
            return None
        bounds = [
            value
            for name in OUTPUT_LIMITS
            if isinstance(value := data.get(name), int) and not isinstance(value, bool)
        ]
        if not bounds:
            return None
        tokens = max(0, *bounds)
        return tokens, self.prices.cost(model or "-", {"completion": tokens})

    def estimate(self, member: Member, relayed: int = 0) -> dict[str, int]:
        """What a request whose usage never came is charged: the member's largest request in
        this worker (the estimate its admission set aside), as completion tokens, and never
        less than a token per event relayed (each streamed delta carries at least one)."""
        tokens, nanos = self.leases.largest.get(member.id, (0, 0))
        completion = max(tokens, relayed, 1)
        estimated = {"prompt": 0, "completion": completion, "reasoning": 0, "cached": 0}
        if nanos:
            estimated["cost_ticks"] = nanos * TICKS_PER_NANO
        return estimated

    async def _record_usage(
        self, member: Member, model: str | None, usage: dict[str, int] | None
    ) -> None:
        model = model or "-"
        usage = usage or {}
        cost = self.prices.cost(model, usage) if usage else 0
        now = datetime.now(UTC)
        names = windows(now)
        row = self.pending[(member.id, names[1][1:], model)]
        counts = (
            1,
            usage.get("prompt", 0),
            usage.get("completion", 0),
            usage.get("reasoning", 0),
            usage.get("cached", 0),
            cost,
            usage.get("server_side_tools", 0),
            usage.get("sources", 0),
        )
        for index, value in enumerate(counts):
            row[index] += value
        self.activity.count(member.id, model, counts, now)
        metrics.count_member(member.name, usage, cost / NANOS_PER_DOLLAR)
        if member.limits.metered and usage:
            tokens = usage_tokens(usage)
            # In memory and at once, so the member's next check in this worker sees it;
            # the counters get it with the next batch or lease.
            self.leases.record(member, names, tokens, cost)

    async def flush(self, *, final: bool = False) -> None:
        """Write the usage gathered since the last flush (kept for later if that fails),
        settle the leases with the shared counters (`final`: give every lease back)."""
        # One at a time: a report that flushes before it reads must not read while another
        # flush (the loop's) holds the batch it took but has not written yet.
        async with self.flushing:
            await self._flush(final=final)

    async def _flush(self, *, final: bool) -> None:
        for (kind, object_id), member_id in list(self.pending_claims.items()):
            await self.store.claim(member_id, kind, [object_id])
            del self.pending_claims[(kind, object_id)]
        await self.leases.settle(windows(datetime.now(UTC)), final=final)
        await self.activity.flush()
        if not self.pending:
            return
        batch, self.pending = self.pending, defaultdict(lambda: [0] * len(USAGE_COLUMNS))
        rows = [
            {
                "member_id": member_id,
                "day": day,
                "model": model,
                **dict(zip(USAGE_COLUMNS, counts, strict=True)),
            }
            for (member_id, day, model), counts in batch.items()
        ]
        try:
            await self.store.add_usage(rows)
        except BaseException:
            for key, counts in batch.items():
                row = self.pending[key]
                for index, value in enumerate(counts):
                    row[index] += value
            while len(self.pending) > MAX_PENDING_ROWS:
                del self.pending[next(iter(self.pending))]
            raise
        minute = int(datetime.now(UTC).timestamp()) // 60
        await self.store.prune_counters(minute - 2)

    # ownership
    async def claim(self, member: Member, kind: str, object_ids: list[str]) -> None:
        """The member created these objects: only it will reach them through the proxy."""
        if kind == CLIENT_SECRET:  # a credential: kept only as its hash
            object_ids = [hash_key(secret) for secret in object_ids]
        try:
            await self.store.claim(member.id, kind, object_ids)
        except DB_ERRORS as exc:
            # The object exists upstream already: keep the claim and write it when the
            # database is back (this worker answers for it meanwhile).
            self._database_failed(exc)
            for object_id in object_ids:
                self.pending_claims[(kind, object_id)] = member.id

    async def secret_caller(self, secret: str, fingerprint: str) -> MemberCaller | None:
        """The member behind an ephemeral WebSocket token it minted through this proxy.

        None for a token minted elsewhere: xAI checks it, and its sessions are nobody's.
        """
        hashed = hash_key(secret)
        member_id = self.pending_claims.get((CLIENT_SECRET, hashed))
        if member_id is None:
            member_id = await self.store.owner(CLIENT_SECRET, hashed)
        member = self.directory.members.get(member_id or "") or next(
            (m for m in self.settings_keys.values() if m.id == member_id), None
        )
        if member is None:
            return None
        return MemberCaller("", f"{member.name}/{fingerprint}", _enabled(member))

    async def owns(self, member: Member, kind: str, object_id: str) -> bool:
        """Whether the member created this object through the proxy."""
        if self.pending_claims.get((kind, object_id)) == member.id:
            return True
        return object_id in await self.store.owned(member.id, kind, [object_id])

    async def owned_among(self, member: Member, kind: str, object_ids: list[str]) -> set[str]:
        """The member's objects among `object_ids` (for filtering lists)."""
        return await self.store.owned(member.id, kind, object_ids)

    async def require(self, member: Member, kind: str, object_id: str) -> None:
        """404, as if absent, unless the member owns the object."""
        if not await self.owns(member, kind, object_id):
            raise ObjectNotFound(f"No {kind} with id {object_id} was found.")

    async def require_all(self, member: Member, named: Iterable[tuple[str, str]]) -> None:
        """`require` for each (kind, id) a request names, over every protocol; 503 when the
        database cannot say who owns them (answering anyway could show others' objects)."""
        try:
            for kind, object_id in named:
                await self.require(member, kind, object_id)
        except DB_ERRORS as exc:
            raise DatabaseUnavailable(
                "The team database is unreachable, so object ownership cannot be checked; "
                "try again shortly."
            ) from exc

    def key_view(self, member: Member, presented: str) -> dict[str, Any]:
        """GET /api-key for a member: its own key and limits, never the account's."""
        return {
            "redacted_api_key": f"{presented[:4]}...{presented[-4:]}",
            "name": member.name,
            "api_key_id": key_fingerprint(presented),
            "member_id": member.id,
            "limits": member.limits.to_json(),
            "acls": [f"api-key:model:{model}" for model in member.limits.models or ("*",)]
            + [f"api-key:endpoint:{route}" for route in member.limits.routes or ("*",)],
            "api_key_blocked": False,
            "api_key_disabled": member.disabled,
            "team_blocked": False,
        }

    def settings_names(self) -> dict[str, str]:
        """Names of the GROK_PROXY_API_KEYS members, by member id."""
        return {member.id: member.name for member in self.settings_keys.values()}

    # members (admin API and CLI)
    async def members(self) -> list[tuple[Member, int]]:
        """Database members with their key counts, then the GROK_PROXY_API_KEYS members."""
        listed = await self.store.list_members()
        return listed + [(member, 1) for member in self.settings_keys.values()]


def _enabled(member: Member) -> Member:
    """The member, or 401 when it is disabled (whichever credential it came with)."""
    if member.disabled:
        raise MissingApiKey(
            f"Member {member.name} is disabled on this proxy.", code="member_disabled"
        )
    return member


class TeamAuth(CallerAuth):
    """CallerAuth for a shared proxy: member access keys in, the member's upstream key out."""

    def __init__(self, settings: Settings, team: Team) -> None:
        super().__init__(settings)
        self.team = team

    def admit(self, presented: str | None, *, where: str) -> MemberCaller:
        member = self.team.admit(presented, where)
        assert presented is not None
        fingerprint = key_fingerprint(presented)
        if not member.from_settings:  # those are named by their fingerprint already
            fingerprint = f"{member.name}/{fingerprint}"
        return MemberCaller(self.team.upstream_key(member), fingerprint, member)


@dataclass(frozen=True, slots=True)
class MemberCaller(Caller):
    """A Caller that also says which member it is."""

    member: Member
    # The team counts every member's usage, so a chat stream must end with its usage
    # chunk: the routes ask xAI for it and strip it again where the caller did not.
    wants_usage: ClassVar[bool] = True
