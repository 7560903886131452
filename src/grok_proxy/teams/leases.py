"""Per-worker leases on the shared limit counters: most requests need no database statement.

The shared counter row of a member's window (requests this minute, tokens this day, ...)
holds what the workers of every replica have *taken* from the limit. A worker takes a
slice of the remaining allowance (a lease) with one atomic conditional statement, serves
requests from it in memory, and takes the next slice when it runs out. The counter can
therefore never pass the limit through leases, however many replicas share it; the slice
shrinks as the remaining allowance shrinks (never more than half of what remains), so
near a limit each request takes its own one-unit lease, as precise as a statement per
request.

Requests are known in advance (one per request); tokens and dollars only when an answer
ends. For those a request reserves an estimate (the largest request of the member this
worker has seen) from the lease; a finished request subtracts what it really used at once
(the member's next check in this worker sees it), and what it used beyond the lease is
charged to the counter before the next lease is taken, and in the batch written every
second. When the lease left is smaller than one request, the member's requests run one at
a time in this worker: a budget is overshot by at most one request per worker.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from grok_proxy.teams.errors import BudgetExceeded, RateLimited
from grok_proxy.teams.members import Member
from grok_proxy.teams.pricing import NANOS_PER_DOLLAR

# A lease covers about this many seconds of the member's recent demand in this worker:
# long enough that a busy member costs a statement every few seconds, short enough that a
# replica that dies holding one strands little of a day's or month's budget.
LEASE_SECONDS = 10.0
# An unused lease nobody drew on for this long goes back to the shared counter, where
# other replicas can take it.
IDLE_SECONDS = 10.0

REQUESTS, TOKENS, NANOS = "requests", "tokens", "cost_nanos"


def lease_size(need: int, demand: int, remaining: int) -> int:
    """How much to take from the shared counter: 0 when nothing remains.

    At least one request's worth (`need`, and at least 1); otherwise the member's recent
    demand in this worker, but never more than half of what remains, so that the other
    replicas still find some and a slice shrinks to single requests near the limit; never
    more than what remains.
    """
    if remaining <= 0:
        return 0
    return min(remaining, max(need, 1, min(demand, remaining // 2)))


class Counters(Protocol):
    """The statements the leases need (store.Store has them)."""

    async def lease(
        self, member_id: str, period: str, measure: str, amount: int, limit: int
    ) -> tuple[int, int]: ...

    async def charge(self, member_id: str, period: str, measure: str, amount: int) -> int: ...

    async def adjust_counters(self, rows: list[dict[str, int | str]]) -> None: ...


@dataclass(slots=True, eq=False)
class Slot:
    """This worker's share of one limit of one member in one window."""

    member_id: str
    period: str  # the counter window, as store.windows names it
    measure: str  # REQUESTS, TOKENS or NANOS: the counter column
    limit: int
    # Taken from the shared counter and not used yet; negative: used beyond the lease,
    # owed to the counter.
    have: int = 0
    # Set aside for requests in flight (their estimate), given back when they end.
    reserved: int = 0
    # The shared counter as last seen: it only sizes the next lease.
    counted: int = 0
    # The counter was full when last asked; kept until the next reload of the members,
    # so a member over its limit is refused without a statement per request.
    exhausted: bool = False
    used_at: float = 0.0  # monotonic time of the last admission

    @property
    def available(self) -> int:
        return self.have - self.reserved


class Demand:
    """How much of one measure a member used in this worker over the last 10 to 20 s."""

    __slots__ = ("current", "previous", "started")

    def __init__(self) -> None:
        self.started = 0.0
        self.current = 0
        self.previous = 0

    def add(self, amount: int, clock: float) -> None:
        self._roll(clock)
        self.current += amount

    def recent(self, clock: float) -> int:
        self._roll(clock)
        return self.current + self.previous

    def _roll(self, clock: float) -> None:
        elapsed = clock - self.started
        if elapsed >= LEASE_SECONDS:
            self.previous = self.current if elapsed < 2 * LEASE_SECONDS else 0
            self.current = 0
            self.started = clock


@dataclass(slots=True)
class Admission:
    """An admitted request: what it set aside from the leases, and near a limit its
    member's turn in this worker."""

    lock: asyncio.Lock | None = None
    reserved: list[tuple[Slot, int]] = field(default_factory=list)
    # The route's answers end with their usage (chat, completions, Responses, Messages).
    reports_usage: bool = False

    def release(self) -> None:
        """Give back the estimate and the turn (once; later calls do nothing)."""
        for slot, amount in self.reserved:
            slot.reserved -= amount
        self.reserved = []
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class Leases:
    """Every lease of one worker, and the member turns near a limit."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.slots: dict[tuple[str, str, str, int], Slot] = {}
        self.demand: dict[tuple[str, str], Demand] = defaultdict(Demand)
        # Per member: the largest tokens and cost of one request seen by this worker (the
        # estimate a request reserves).
        self.largest: dict[str, tuple[int, int]] = {}
        # One request at a time near a limit; one counter statement at a time per member
        # (a lease must be taken on a counter that includes what this worker owes).
        self.turns: dict[str, asyncio.Lock] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def slots_for(
        self, member: Member, names: tuple[str, str, str], floor: tuple[int, int] = (0, 0)
    ) -> list[tuple[Slot, int]]:
        """The member's limited windows, each with what one request needs from it (at least
        `floor` tokens and nanos)."""
        limits = member.limits
        minute, day, month = names
        tokens, nanos = self.largest.get(member.id, (0, 0))
        tokens, nanos = max(tokens, floor[0]), max(nanos, floor[1])
        wanted = (
            (minute, REQUESTS, limits.rpm, 1),
            (minute, TOKENS, limits.tpm, tokens),
            (day, TOKENS, limits.tokens_per_day, tokens),
            (month, TOKENS, limits.tokens_per_month, tokens),
            (day, NANOS, dollars_to_nanos(limits.dollars_per_day), nanos),
            (month, NANOS, dollars_to_nanos(limits.dollars_per_month), nanos),
        )
        found = []
        for period, measure, limit, need in wanted:
            if limit is None:
                continue
            # The limit is part of the key: a changed limit starts a fresh lease, and the
            # old one goes back as idle.
            key = (member.id, period, measure, limit)
            slot = self.slots.get(key)
            if slot is None:
                slot = self.slots[key] = Slot(member.id, period, measure, limit)
            found.append((slot, max(need, 1)))
        return found

    async def admit(
        self,
        member: Member,
        names: tuple[str, str, str],
        now: datetime,
        admission: Admission,
        declared: tuple[int, int] | None = None,
    ) -> None:
        """Set this request's share aside in every limited window, or raise a 429.

        `declared`: the tokens and nanos the request may use by its own `max_tokens`; a
        request that could not fit what is left of a budget even alone is refused.
        """
        slots = self.slots_for(member, names, declared or (0, 0))
        while not _covered(slots):
            async with self.locks.setdefault(member.id, asyncio.Lock()):
                for slot, need in slots:
                    if slot.available < need:
                        await self._refill(slot, need)
            if _covered(slots):
                break
            for slot, need in slots:
                # Nothing left here, and nothing more to take from the shared counter.
                if slot.have <= 0:
                    raise refusal(member, slot, now)
                # All this worker holds (in-flight estimates included) is less than the
                # request says it may use, and the counter gave no more.
                if declared is not None and slot.measure != REQUESTS and slot.have < need:
                    raise refusal(member, slot, now)
            if admission.lock is not None:
                break  # this worker's one request near the limit runs on what is left
            turn = self.turns.setdefault(member.id, asyncio.Lock())
            await turn.acquire()
            admission.lock = turn
            # The request ahead has ended and subtracted its usage: look again.
        if admission.lock is not None and _covered(slots):
            admission.release()  # a fresh lease covers it: no need to hold the turn
        clock = time.monotonic()
        for slot, need in slots:
            slot.used_at = clock
            if slot.measure == REQUESTS:
                slot.have -= 1  # a request is known in advance: used now
                self.demand[(member.id, REQUESTS)].add(1, clock)
            else:
                slot.reserved += need
                admission.reserved.append((slot, need))

    def record(self, member: Member, names: tuple[str, str, str], tokens: int, nanos: int) -> None:
        """A finished request's tokens and cost, subtracted from the leases at once."""
        largest = self.largest.get(member.id, (0, 0))
        self.largest[member.id] = (max(largest[0], tokens), max(largest[1], nanos))
        clock = time.monotonic()
        self.demand[(member.id, TOKENS)].add(tokens, clock)
        self.demand[(member.id, NANOS)].add(nanos, clock)
        for slot, _ in self.slots_for(member, names):
            if slot.measure == TOKENS:
                slot.have -= tokens
            elif slot.measure == NANOS:
                slot.have -= nanos

    def refuse_known_over(self, member: Member, names: tuple[str, str, str], now: datetime) -> None:
        """Raise the 429 of a limit this worker knows, without the database, to be used up:
        nothing of it in hand, and the counter as last seen plus this worker's use since
        reach the limit (for when the database cannot be asked)."""
        for slot, _ in self.slots_for(member, names):
            if slot.have <= 0 and (slot.exhausted or slot.counted - slot.have >= slot.limit):
                raise refusal(member, slot, now)

    def forget_exhausted(self) -> None:
        """Ask the shared counters again (another replica may have given a lease back, or
        a limit may have been raised)."""
        for slot in self.slots.values():
            slot.exhausted = False

    async def settle(self, names: tuple[str, str, str], *, final: bool = False) -> None:
        """Charge what was used beyond the leases, give back leases idle for IDLE_SECONDS
        (all of them when `final`), and forget the windows that have ended."""
        clock = time.monotonic()
        current = set(names)
        for key, slot in list(self.slots.items()):
            if slot.period not in current and slot.reserved == 0:
                # An ended window limits nothing any more: its lease simply expires.
                del self.slots[key]
        owing = sorted(
            {slot.member_id for slot in self.slots.values() if _settles(slot, clock, final)}
        )
        locks = [self.locks.setdefault(member_id, asyncio.Lock()) for member_id in owing]
        for lock in locks:  # always in the same order: no deadlock between settles
            await lock.acquire()
        changed: list[tuple[Slot, int]] = []
        try:
            rows: dict[tuple[str, str], dict[str, int | str]] = {}
            for slot in self.slots.values():
                if slot.period not in current or not _settles(slot, clock, final):
                    continue
                # Charging a debt adds it; giving a lease back subtracts it: either way
                # the counter moves by -have and this worker keeps nothing.
                delta = -slot.have
                slot.have += delta
                slot.counted += delta  # the counter moves by as much
                changed.append((slot, delta))
                row = rows.setdefault(
                    (slot.member_id, slot.period),
                    {
                        "member_id": slot.member_id,
                        "period": slot.period,
                        REQUESTS: 0,
                        TOKENS: 0,
                        NANOS: 0,
                    },
                )
                row[slot.measure] = int(row[slot.measure]) + delta
            if rows:
                await self.counters.adjust_counters(list(rows.values()))
        except BaseException:
            for slot, delta in changed:
                slot.have -= delta  # kept for the next try
                slot.counted -= delta
            raise
        finally:
            for lock in locks:
                lock.release()

    async def _refill(self, slot: Slot, need: int) -> None:
        """Pay what this worker owes on the slot, then take a new lease if any remains."""
        if slot.have < 0:
            debt = -slot.have
            slot.have += debt
            try:
                slot.counted = await self.counters.charge(
                    slot.member_id, slot.period, slot.measure, debt
                )
            except BaseException:
                slot.have -= debt
                raise
        if slot.exhausted:
            return
        demand = self.demand[(slot.member_id, slot.measure)].recent(time.monotonic())
        fresh = False
        while True:
            remaining = slot.limit - slot.counted
            if not fresh:
                # The counter as last seen may be stale (leases given back since): ask for
                # at least one request's worth, and let the conditional statement decide.
                remaining = max(remaining, min(need, slot.limit))
            want = lease_size(need, demand, remaining)
            if want <= 0:
                slot.exhausted = True
                return
            granted, slot.counted = await self.counters.lease(
                slot.member_id, slot.period, slot.measure, want, slot.limit
            )
            fresh = True
            if granted:
                slot.have += granted
                return
            # Another replica took some since this worker last looked: size it again from
            # the counter the refusal returned (each retry means the counter grew).


def _covered(slots: list[tuple[Slot, int]]) -> bool:
    return all(slot.available >= need for slot, need in slots)


def _settles(slot: Slot, clock: float, final: bool) -> bool:
    if slot.have < 0:
        return True
    idle = final or clock - slot.used_at >= IDLE_SECONDS
    return slot.have > 0 and slot.reserved == 0 and idle


def dollars_to_nanos(dollars: float | None) -> int | None:
    return None if dollars is None else round(dollars * NANOS_PER_DOLLAR)


def seconds_to_next_minute(now: datetime) -> float:
    return 60 - now.second - now.microsecond / 1e6


def refusal(member: Member, slot: Slot, now: datetime) -> RateLimited:
    """The 429 for a member whose `slot` is used up."""
    if slot.period.startswith("m"):
        unit = "requests" if slot.measure == REQUESTS else "tokens"
        return RateLimited(
            f"Member {member.name} reached its limit of {slot.limit} {unit} per minute.",
            seconds_to_next_minute(now),
        )
    if slot.period.startswith("d"):
        span = "day"
        resets = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        span = "month"
        resets = (now.replace(day=1) + timedelta(days=32)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
    if slot.measure == NANOS:
        shown, unit = slot.limit / NANOS_PER_DOLLAR, "dollars"
    else:
        shown, unit = float(slot.limit), "tokens"
    return BudgetExceeded(
        f"Member {member.name} used its budget of {shown:g} {unit} per {span}; it renews at "
        f"{resets:%Y-%m-%d %H:%M} UTC.",
        (resets - now).total_seconds(),
    )
