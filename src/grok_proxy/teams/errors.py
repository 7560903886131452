"""The answers a shared proxy gives before anything goes upstream.

Tree (all grok_proxy.calls.errors.ProxyError)::

    RateLimited        429 rate_limit_exceeded, Retry-After until the minute window ends
    BudgetExceeded     429 budget_exceeded, Retry-After until the day or month ends
    NotAllowed         403 model_not_allowed / route_not_allowed / route_not_shared
    ObjectNotFound     404, another member's object answered as if it did not exist
    NoUpstreamKey      503, neither the member's own xAI key nor XAI_API_KEY is set
    DatabaseUnavailable 503 team_database_unavailable, ownership cannot be read
"""

from __future__ import annotations

import math

from grok_proxy.calls.errors import ProxyError


class RateLimited(ProxyError):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.headers["retry-after"] = str(max(1, math.ceil(retry_after)))


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class NotAllowed(ProxyError):
    status = 403
    code = "route_not_allowed"


class ObjectNotFound(ProxyError):
    status = 404
    code = "not_found"


class NoUpstreamKey(ProxyError):
    status = 503
    code = "no_upstream_key"


class DatabaseUnavailable(ProxyError):
    status = 503
    code = "team_database_unavailable"
