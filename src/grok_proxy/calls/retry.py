"""One retry policy for every route: only what is safe, only before the caller saw a byte.

Always retried: a request that never left (no connection). Retried on 429/502/503/504 only
when sending it again cannot do the work twice: an idempotent method, a request carrying
an Idempotency-Key, a 429 that says when to come back (Retry-After), or a 503 (the upstream
says it is not serving). A POST answered 502 or 504 may still be generating, and billed:
it is not sent again. Never retried: other 4xx, timeouts and dropped connections after
sending, streamed request bodies (they cannot be replayed), anything after a stream
started. A caller whose SDK retries by itself (it sends `x-stainless-retry-count`) gets
no status retries here, so retries do not multiply; `x-grok-proxy-max-retries` caps them
per request. Waits grow exponentially with jitter; Retry-After wins, up to a cap; no retry
starts after the overall deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time
from typing import Protocol

from grok_proxy.calls.transport import (
    Body,
    BodyTooLarge,
    NothingSent,
    UpstreamFailure,
    UpstreamResponse,
)
from grok_proxy.config import Settings

log = logging.getLogger("grok_proxy.retry")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
ATTEMPTS_HEADER = "x-grok-proxy-attempts"
# Sent by the OpenAI and Anthropic SDKs, which retry by themselves.
CLIENT_RETRIES_HEADER = "x-stainless-retry-count"
MAX_RETRIES_HEADER = "x-grok-proxy-max-retries"


class Sender(Protocol):
    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> UpstreamResponse: ...


def retry_after_seconds(retry_after_ms: str, retry_after: str) -> float | None:
    """The wait upstream asked for, from `retry-after-ms` or `retry-after` (seconds or a date)."""
    try:
        if retry_after_ms:
            return max(0.0, float(retry_after_ms) / 1000)
        if retry_after:
            return max(0.0, float(retry_after))
    except ValueError:
        pass
    if retry_after:
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time())
        except (TypeError, ValueError):
            return None
    return None


@dataclass(frozen=True, slots=True)
class Budget:
    """How many retries one request may take, and whether status answers count."""

    retries: int
    status_retries: bool = True


@dataclass(slots=True)
class Tally:
    """How many attempts a request took, for the caller's response header."""

    attempts: int = 0


class RetryPolicy:
    def __init__(self, settings: Settings) -> None:
        self.max_retries = settings.retry.max_retries
        self.backoff = settings.retry.backoff
        self.max_wait = settings.retry.max_wait
        self.deadline = settings.retry.deadline

    def wait_before(self, attempt: int, hinted: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1`."""
        if hinted is not None:
            return min(hinted, self.max_wait)
        # "Equal jitter": half the exponential step fixed, half random, so callers spread out.
        step = self.backoff * 2.0 ** (attempt - 1)
        return min(self.max_wait, step * random.uniform(0.5, 1.0))  # noqa: S311 - not crypto

    def budget(self, caller_headers: Mapping[str, str]) -> Budget:
        """The retries the caller's request headers allow."""
        retries = self.max_retries
        cap = caller_headers.get(MAX_RETRIES_HEADER, "").strip()
        if cap.isdigit():
            retries = min(retries, int(cap))
        return Budget(retries, status_retries=CLIENT_RETRIES_HEADER not in caller_headers)

    async def send(
        self,
        client: Sender,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        body: Body,
        tally: Tally,
        budget: Budget,
    ) -> UpstreamResponse:
        """Send, retrying what is safe to retry; the last answer or error is the caller's."""
        retries, status_retries = budget.retries, budget.status_retries
        if body is not None and not isinstance(body, bytes):
            retries = 0  # a streamed body is consumed by the first attempt
        replayable = method in IDEMPOTENT or any(name == "idempotency-key" for name, _ in headers)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.deadline
        while True:
            tally.attempts += 1
            try:
                response = await client.send(method, url, headers, body)
            except NothingSent as exc:
                wait = self.wait_before(tally.attempts, None)
                if not self._may_retry(tally.attempts, retries, wait, loop.time(), give_up_at):
                    raise
                log.warning(
                    "attempt %d could not connect (%s); retrying in %.2fs",
                    tally.attempts,
                    exc.message,
                    wait,
                )
            else:
                if response.status not in RETRYABLE_STATUSES or not status_retries:
                    return response
                hinted = retry_after_seconds(
                    response.header("retry-after-ms"), response.header("retry-after")
                )
                unstarted = response.status == 503 or (
                    response.status == 429 and hinted is not None
                )
                if not (replayable or unstarted):
                    return response
                wait = self.wait_before(tally.attempts, hinted)
                if not self._may_retry(tally.attempts, retries, wait, loop.time(), give_up_at):
                    return response
                with contextlib.suppress(BodyTooLarge, UpstreamFailure):
                    await response.read(64 * 1024)  # read so the connection is reused
                log.warning(
                    "attempt %d answered %d; retrying in %.2fs",
                    tally.attempts,
                    response.status,
                    wait,
                )
            await asyncio.sleep(wait)

    @staticmethod
    def _may_retry(attempt: int, retries: int, wait: float, now: float, give_up_at: float) -> bool:
        return attempt <= retries and now + wait <= give_up_at
