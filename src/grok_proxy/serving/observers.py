"""The hook through which metrics, logs and traces see each call, whichever its protocol.

The serving layer (entry.py) and the two relays (relays/websocket.py, relays/grpc.py) tell
every observer when a call starts and when it ends, with the call's one record
(calls.record.RequestRecord); they know none of the observers. The composition root
(app.py) picks them: the Prometheus metrics and the access log always, traces when
configured. Each call is reported once, as it ends: what a relay counts per message is a
plain tally on the record, so the observers cost nothing per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.types import Message, Scope

from grok_proxy.calls.record import RequestRecord


@dataclass(slots=True)
class Finished:
    """One answered (or abandoned) call, as observers see it."""

    # The ASGI scope (http or websocket); a gRPC call's is its own small one (grpc_scope).
    scope: Scope
    # The path as the caller sent it (before dot-segments and the /v1 alias); a gRPC method.
    path: str
    record: RequestRecord
    # What the caller got: the HTTP status (a WebSocket handshake's: 101 once accepted),
    # 499 when it left before any answer; a gRPC call's status code name (OK, CANCELLED...).
    status: int | str
    # perf_counter() readings: arrival, first response byte (None: never), the end.
    started: float
    first_byte: float | None
    ended: float


# Sees each ASGI message of one call on its way: an HTTP response's, and both directions
# of a WebSocket session's (websocket.receive, websocket.send). Only tracing asks for one.
Listener = Callable[[Message], None]


class Observer(Protocol):
    """Sees every call; must not raise, and must not block."""

    def started(self, scope: Scope, record: RequestRecord) -> Listener | None:
        """The call arrived; a listener to see its messages, if wanted."""

    def finished(self, request: Finished) -> None:
        """The call ended (its answer sent, or the caller gone)."""


def grpc_scope(
    method: str,
    client: str,
    metadata: dict[str, str | bytes],
    upstream: tuple[str, int],
) -> Scope:
    """A gRPC call as observers see it: its method as the path, its metadata, the upstream."""
    return {
        "type": "grpc",
        "method": "gRPC",
        "path": method,
        "client": (client, 0),
        "metadata": metadata,
        "upstream": upstream,
        "state": {},
    }


def start_all(
    observers: Sequence[Observer], scope: Scope, record: RequestRecord
) -> Listener | None:
    """Tell every observer a call started; the one listener to call per message, if any."""
    listeners = [listen for observer in observers if (listen := observer.started(scope, record))]
    if not listeners:
        return None
    if len(listeners) == 1:
        return listeners[0]

    def listen_all(message: Message) -> None:
        for listen in listeners:
            listen(message)

    return listen_all


def finish_all(observers: Sequence[Observer], finished: Finished) -> None:
    """Tell every observer a call ended."""
    for observer in observers:
        observer.finished(finished)
