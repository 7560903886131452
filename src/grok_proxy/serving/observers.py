"""The hook through which metrics, logs and traces see each HTTP request.

The serving layer (entry.py) tells every observer when a request starts and when it ends;
it knows none of them. The composition root (app.py) picks the observers: the Prometheus
metrics and the access log always, others (traces) when configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import Message, Scope

from grok_proxy.calls.record import RequestRecord


@dataclass(slots=True)
class Finished:
    """One answered (or abandoned) HTTP request, as observers see it."""

    scope: Scope
    # The path as the caller sent it (before dot-segments and the /v1 alias).
    path: str
    record: RequestRecord
    # What the caller got; 499 when it left before any answer.
    status: int
    # perf_counter() readings: arrival, first response byte (None: never), the end.
    started: float
    first_byte: float | None
    ended: float


# Sees each ASGI message of one response on its way to the caller.
Listener = Callable[[Message], None]


class Observer(Protocol):
    """Sees every HTTP request; must not raise, and must not block."""

    def started(self, scope: Scope, record: RequestRecord) -> Listener | None:
        """The request arrived; a listener to see its response's messages, if wanted."""

    def finished(self, request: Finished) -> None:
        """The request ended (its answer sent, or the caller gone)."""
