"""A server-sent events parser for relaying: raw event bytes out, parsed fields beside them.

It follows the WHATWG rules a client applies: lines end in LF, CRLF or CR; an empty line
ends an event; lines starting with `:` are comments; several `data:` lines join with a
newline; one space after the colon is dropped. Reads may split an event anywhere (even
between CR and LF) or carry several events. Each event comes out as the exact bytes the
upstream sent, so a relay can pass it on untouched and decide on the parsed fields.

Parsing is incremental: every byte is scanned once, so a huge event costs linear time, and
an event larger than `max_event` is refused rather than buffered without end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Any line end; a lone CR at the end of the buffer may still be the first half of CRLF.
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    """One complete event: its raw bytes and the fields a relay decides with."""

    raw: bytes
    # The `event:` field (None when absent: the type is then "message").
    name: bytes | None
    # The data lines joined by "\n"; None for an event without data (comments only).
    data: bytes | None


class EventTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class SseParser:
    """Feed it bytes as they arrive; it returns the events completed by them."""

    def __init__(self, max_event: int) -> None:
        self.max_event = max_event
        self.buffer = bytearray()
        # The start of the line being read, and where the search for its end resumes
        # (past what was already searched, so a long line is scanned only once).
        self.line_start = 0
        self.search_from = 0
        self.name: bytes | None = None
        self.data: list[bytes] = []

    def feed(self, chunk: bytes, *, final: bool = False) -> list[Event]:
        """The events `chunk` completes; `final` when no more bytes will come."""
        buffer = self.buffer
        buffer += chunk
        events: list[Event] = []
        start = 0  # start of the current event within the buffer
        line_start = self.line_start
        search_from = self.search_from
        while True:
            match = _LINE_END.search(buffer, search_from)
            if match is None:
                search_from = len(buffer)
                break
            end, after = match.span()
            if after == len(buffer) and after - end == 1 and buffer[end] == 0x0D and not final:
                search_from = end  # a lone CR at the end: wait to see whether LF follows
                break
            if end == line_start:
                # An empty line ends the event.
                if after - start > self.max_event:
                    raise EventTooLarge(self.max_event)
                events.append(self._event(bytes(buffer[start:after])))
                start = after
            else:
                self._field(bytes(buffer[line_start:end]))
            line_start = search_from = after
        if start:
            del buffer[:start]
            line_start -= start
            search_from -= start
        self.line_start, self.search_from = line_start, search_from
        if len(buffer) > self.max_event:
            raise EventTooLarge(self.max_event)
        return events

    def close(self) -> list[Event]:
        """At the end of the stream: the event a final lone CR completes, if any."""
        return self.feed(b"", final=True)

    def pending(self) -> bytes:
        """Bytes of an event the stream has not finished (kept for the end of the stream)."""
        return bytes(self.buffer)

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # a comment
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self.data.append(value)
        elif name == b"event":
            self.name = value

    def _event(self, raw: bytes) -> Event:
        event = Event(raw, self.name, b"\n".join(self.data) if self.data else None)
        self.name, self.data = None, []
        return event
