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

# Any line end; a lone CR at the end of the buffer may still be the first half of CRLF.
_LINE_END = re.compile(rb"\r\n|\r|\n")


class Event:
    """One complete event: its raw bytes, and the fields a relay decides with.

    The fields are parsed from the raw bytes on first use: a relay looks at them only
    for the few events that can matter (the end, usage), so the rest cost no parsing.
    """

    __slots__ = ("_data", "_name", "_parsed", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed = False
        self._name: bytes | None = None
        self._data: bytes | None = None

    @property
    def name(self) -> bytes | None:
        """The `event:` field (None when absent: the type is then "message")."""
        if not self._parsed:
            self._parse()
        return self._name

    @property
    def data(self) -> bytes | None:
        """The data lines joined by "\\n"; None for an event without data (comments only)."""
        if not self._parsed:
            self._parse()
        return self._data

    def _parse(self) -> None:
        self._parsed = True
        data: list[bytes] = []
        for line in _LINE_END.split(self.raw):
            if not line or line.startswith(b":"):
                continue  # the empty line that ends the event, or a comment
            name, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._name = value
        self._data = b"\n".join(data) if data else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"Event({self.raw!r})"


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

    def feed(self, chunk: bytes, *, final: bool = False) -> list[Event]:
        """The events `chunk` completes; `final` when no more bytes will come."""
        if not (self.buffer or final) and b"\r" not in chunk and b"\n\n\n" not in chunk:
            return self._feed_lf(chunk)
        return self._feed(chunk, final)

    def _feed_lf(self, chunk: bytes) -> list[Event]:
        """The common case, framed with LF only and starting at an event: split, no scan.

        With nothing pending, no CR, and no empty line right after another, every
        `\\n\\n` ends one event, which is what the general scan below would find too.
        """
        if chunk.startswith(b"\n"):
            return self._feed(chunk, False)  # an empty first line: an event of its own
        *complete, rest = chunk.split(b"\n\n")
        events = [Event(raw + b"\n\n") for raw in complete]
        for event in events:
            if len(event.raw) > self.max_event:
                raise EventTooLarge(self.max_event)
        if rest:
            events += self._feed(rest, False)
        return events

    def _feed(self, chunk: bytes, final: bool) -> list[Event]:
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
                events.append(Event(bytes(buffer[start:after])))
                start = after
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
        return self._feed(b"", True)

    def pending(self) -> bytes:
        """Bytes of an event the stream has not finished (kept for the end of the stream)."""
        return bytes(self.buffer)
