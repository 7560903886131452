"""What the proxy learns about one call on its way, for the access log, metrics and traces.

One record per call, whichever protocol: an HTTP request, a WebSocket session or a gRPC
call. Each field has one writer, so the record reads the same whatever path a call took:

| field            | written by                                                   |
|------------------|--------------------------------------------------------------|
| request_id       | entry.Entry, when the request arrives (the relays: theirs)   |
| protocol         | whoever makes the record: http, websocket or grpc            |
| route            | entry.Entry once a row matched (routes.shared.LeanRoute else) |
|                  | relays: the session's route name, the gRPC method            |
| key_fingerprint  | routes.shared.authorized (or the team gate), once admitted   |
|                  | relays: once the caller's key (or ephemeral token) is known  |
| member_id        | relays, when a team's gate admitted the session or call      |
| model            | routes.shared.validated_json, from the validated body        |
|                  | websocket relay: the query's, else the first client event's  |
| upstream_seconds | forwarder.Forwarder, when the upstream's headers arrived     |
| attempts         | forwarder.Forwarder, after the last attempt (retry.Tally)    |
| error_kind       | forwarder.Forwarder before the answer; relay.* after it      |
| usage            | forwarder.Forwarder for JSON bodies; relay.SseRelay streams  |
| streamed         | relay.SseRelay, when a stream starts                         |
| relayed_events   | relay.SseRelay, as events reach the caller                   |
| on_forward       | an observer (tracing.Tracing), when the request starts       |
| messages_*, bytes_* | the relays, as messages pass (plain tallies, told once)   |
| close_code, closed_by | websocket relay, when the first side closes            |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grok_proxy.calls.asgi import Scope

HTTP = "http"
WEBSOCKET = "websocket"
GRPC = "grpc"


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    model: str | None = None
    protocol: str = HTTP
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
    # The team member whose session or call this is (relays; HTTP names it in the scope).
    member_id: str | None = None
    # Messages relayed, from the caller (in) and to it (out): WebSocket and gRPC. Plain
    # tallies, read once as the call ends (no metric is touched per message).
    messages_in: int = 0
    messages_out: int = 0
    # Payload bytes of those messages (WebSocket).
    bytes_in: int = 0
    bytes_out: int = 0
    # A WebSocket session's first close: its code, and who sent it (caller, upstream, proxy).
    close_code: int | None = None
    closed_by: str | None = None


def record_of(scope: Scope) -> RequestRecord:
    """This request's record (a detached one outside the middleware, e.g. in unit tests)."""
    state = scope.setdefault("state", {})
    record = state.get("record")
    if record is None:
        record = state["record"] = RequestRecord(request_id="-")
    assert isinstance(record, RequestRecord)
    return record
