"""What the proxy learns about one request on its way, for the access log and metrics.

Each field has one writer, so the record reads the same whatever path a request took:

| field            | written by                                                   |
|------------------|--------------------------------------------------------------|
| request_id       | entry.Entry, when the request arrives                        |
| route            | entry.Entry once a row matched (routes.shared.LeanRoute else) |
| key_fingerprint  | routes.shared.authorized (or the team gate), once admitted   |
| model            | routes.shared.validated_json, from the validated body        |
| upstream_seconds | forwarder.Forwarder, when the upstream's headers arrived     |
| attempts         | forwarder.Forwarder, after the last attempt (retry.Tally)    |
| error_kind       | forwarder.Forwarder before the answer; relay.* after it      |
| usage            | forwarder.Forwarder for JSON bodies; relay.SseRelay streams  |
| streamed         | relay.SseRelay, when a stream starts                         |
| relayed_events   | relay.SseRelay, as events reach the caller                   |
| on_forward       | an observer (tracing.Tracing), when the request starts       |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grok_proxy.calls.asgi import Scope


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
    # Stream events relayed to the caller: what a cut stream is charged at least (teams).
    relayed_events: int = 0
    # Why the upstream failed, when it did: unreachable, timeout, malformed, stream_cut, ...
    error_kind: str | None = None
    # Told the body as it goes upstream; returns headers to add (a tracer's traceparent).
    on_forward: Callable[[object], list[tuple[str, str]]] | None = None


def record_of(scope: Scope) -> RequestRecord:
    """This request's record (a detached one outside the middleware, e.g. in unit tests)."""
    state = scope.setdefault("state", {})
    record = state.get("record")
    if record is None:
        record = state["record"] = RequestRecord(request_id="-")
    assert isinstance(record, RequestRecord)
    return record
