"""One retry policy for every route: only what is safe, only before the caller saw a byte.

Retried: connect failures (nothing reached upstream) and 429/502/503/504 (upstream said
"not now"). Never retried: other 4xx (the request itself is wrong), read timeouts and
dropped connections after sending (upstream may be working on it), anything after a
stream started. Waits grow exponentially with jitter; Retry-After wins, up to a cap; no
retry starts after the overall deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time

import httpx

from grok_proxy.config import Settings
from grok_proxy.transport import Connector, UpstreamResponse

log = logging.getLogger("grok_proxy.retry")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
ATTEMPTS_HEADER = "x-grok-proxy-attempts"


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


@dataclass(slots=True)
class Tally:
    """How many attempts a request took, for the caller's response header."""

    attempts: int = 0


class RetryPolicy:
    def __init__(self, settings: Settings) -> None:
        self.max_retries = settings.xai_max_retries
        self.backoff = settings.xai_retry_backoff
        self.max_wait = settings.xai_retry_max_wait
        self.deadline = settings.xai_retry_deadline

    def wait_before(self, attempt: int, hinted: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1`."""
        if hinted is not None:
            return min(hinted, self.max_wait)
        # "Equal jitter": half the exponential step fixed, half random, so callers spread out.
        step = self.backoff * 2.0 ** (attempt - 1)
        return min(self.max_wait, step * random.uniform(0.5, 1.0))  # noqa: S311 - not crypto

    async def send(
        self,
        connector: Connector,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        tally: Tally,
    ) -> UpstreamResponse:
        """Send, retrying what is safe to retry; the last answer or error is the caller's."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.deadline
        while True:
            tally.attempts += 1
            try:
                response = await connector.send(method, url, headers, body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                wait = self.wait_before(tally.attempts, None)
                if not self._may_retry(tally.attempts, wait, loop.time(), give_up_at):
                    raise
                log.warning(
                    "attempt %d could not connect (%s); retrying in %.2fs",
                    tally.attempts,
                    exc,
                    wait,
                )
            else:
                if response.status not in RETRYABLE_STATUSES:
                    return response
                hinted = retry_after_seconds(
                    response.header("retry-after-ms"), response.header("retry-after")
                )
                wait = self.wait_before(tally.attempts, hinted)
                if not self._may_retry(tally.attempts, wait, loop.time(), give_up_at):
                    return response
                await response.read()  # small error body: read it so the connection is reused
                log.warning(
                    "attempt %d answered %d; retrying in %.2fs",
                    tally.attempts,
                    response.status,
                    wait,
                )
            await asyncio.sleep(wait)

    def _may_retry(self, attempt: int, wait: float, now: float, give_up_at: float) -> bool:
        return attempt <= self.max_retries and now + wait <= give_up_at
