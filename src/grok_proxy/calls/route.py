"""What the forwarder needs to know about a route, as one small value per route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from grok_proxy.calls.errors import Flavor
from grok_proxy.calls.sse import Event

# Rewrites a successful JSON answer (for the routes that translate).
JsonHook = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a complete stream of a route ends; a stream that ends otherwise was cut short.

    An event ends it when its data is exactly `data`, or when its type (the `event:`
    field, or else the `type` of its JSON data) is one of `types`. With neither, any end
    counts (a route whose stream format the proxy does not know).
    """

    data: bytes | None = None
    types: frozenset[bytes] = field(default_factory=frozenset)

    @property
    def known(self) -> bool:
        return self.data is not None or bool(self.types)

    @property
    def marks(self) -> tuple[bytes, ...]:
        """What an ending event's bytes contain (one of them, at least)."""
        return (*((self.data,) if self.data is not None else ()), *self.types)

    def mentioned(self, raw: bytes) -> bool:
        """Whether `raw` could hold an ending event (a look at the bytes, nothing parsed)."""
        if self.data is not None and self.data in raw:
            return True
        return any(name in raw for name in self.types)

    def reached(self, event: Event) -> bool:
        # Most events are none of these: a look at the raw bytes spares parsing them.
        if self.data is not None and event.mentions(self.data) and event.data == self.data:
            return True
        if not self.types or not any(event.mentions(name) for name in self.types):
            return False
        if event.name is not None:
            return event.name in self.types
        return event.data is not None and _json_type(event.data, self.types) in self.types


def _json_type(data: bytes, candidates: frozenset[bytes]) -> bytes | None:
    # Parse only events that could be terminal: most events mention none of the types.
    if not any(name in data for name in candidates):
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind.encode() if isinstance(kind, str) else None


OPENAI_END = StreamEnd(data=b"[DONE]")
ANTHROPIC_END = StreamEnd(types=frozenset({b"message_stop"}))
RESPONSES_END = StreamEnd(
    data=b"[DONE]",
    types=frozenset({b"response.completed", b"response.failed", b"response.incomplete"}),
)
ANY_END = StreamEnd()


@dataclass(frozen=True, slots=True)
class Route:
    """One route as the forwarder sees it.

    `reads_answer`: a successful JSON answer is read whole (bounded by MAX_RESPONSE_BYTES)
    for usage and rewrites; otherwise the answer streams through as it arrives.
    """

    flavor: Flavor = Flavor.OPENAI
    stream_end: StreamEnd = OPENAI_END
    reads_answer: bool = True


CHAT = Route()
RESPONSES = Route(stream_end=RESPONSES_END)
MESSAGES = Route(flavor=Flavor.ANTHROPIC, stream_end=ANTHROPIC_END)
PASS_THROUGH = Route(stream_end=ANY_END, reads_answer=False)
