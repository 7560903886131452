"""What the proxy learns about one request on its way, for the access log and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    model: str | None = None
    key_fingerprint: str | None = None
    # Seconds from sending upstream to its response headers (retries included).
    upstream_seconds: float | None = None
    attempts: int = 0
    usage: dict[str, int] | None = None
    # The route template that answered (bounded, unlike raw paths), for metrics.
    route: str | None = None
    streamed: bool = False
    # Why the upstream failed, when it did: unreachable, timeout, malformed, stream_cut, ...
    error_kind: str | None = None


def record_of(scope: Scope) -> RequestRecord:
    """This request's record (a detached one outside the middleware, e.g. in unit tests)."""
    state = scope.setdefault("state", {})
    record = state.get("record")
    if record is None:
        record = state["record"] = RequestRecord(request_id="-")
    assert isinstance(record, RequestRecord)
    return record
