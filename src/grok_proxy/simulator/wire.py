"""What the simulator's HTTP server and its API modules exchange: requests and outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class SimRequest:
    """One request as the simulator received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Reply:
    """A whole response."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class Cut(Exception):
    """Raised inside a stream to drop the connection mid-answer, as a failing upstream would."""


@dataclass(slots=True)
class Stream:
    """A chunked response whose body comes from an async iterator (it may sleep, stall or Cut)."""

    events: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/event-stream"


@dataclass(slots=True)
class Reset:
    """Drop the connection without answering, as a crashing upstream would."""


Outcome = Reply | Stream | Reset
Handler = Callable[[SimRequest], "Outcome | Awaitable[Outcome]"]
