"""A server-sent events parser for relaying: raw event bytes out, parsed fields beside them.

It follows the WHATWG rules a client applies: lines end in LF, CRLF or CR; an empty line
ends an event; lines starting with `:` are comments; several `data:` lines join with a
newline; one space after the colon is dropped. Reads may split an event anywhere (even
between CR and LF) or carry several events. Each event comes out as the exact bytes the
upstream sent, so a relay can pass it on untouched and decide on the parsed fields.

Parsing is incremental: every byte is scanned once (at memchr speed: a regular expression
took 0.8 s of the event loop for one 60 MB event), a complete event is copied out once,
and an event larger than `max_event` is refused rather than buffered without end. A large
event (a megabyte or more) is not copied at all, and the marks a relay decides on (the
end, usage) are looked for in it as its bytes arrive: no step of relaying it looks at the
whole event at once, so other callers wait for no more than one read's worth of work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Any line end (for the fields of one complete event, parsed on demand).
_LINE_END = re.compile(rb"\r\n|\r|\n")
# What a relay hands the server at a time: a huge event goes out in pieces, each a short
# copy, and the server's flow control lets other callers' work in between (issue 24).
RELAY_PIECE_BYTES = 1024 * 1024
# From this size on, an event's marks are found as it arrives and it is handed out uncopied.
LARGE_EVENT_BYTES = RELAY_PIECE_BYTES


def pieces(raw: bytes | bytearray, size: int = RELAY_PIECE_BYTES) -> Iterator[bytes]:
    """`raw` in consecutive pieces of at most `size` bytes (itself when it is that small)."""
    if len(raw) <= size and isinstance(raw, bytes):
        yield raw
        return
    with memoryview(raw) as view:
        for start in range(0, len(raw), size):
            yield view[start : start + size].tobytes()


class Event:
    """One complete event: its raw bytes, and the fields a relay decides with.

    The fields are parsed from the raw bytes on first use: a relay looks at them only
    for the few events that can matter (the end, usage), so the rest cost no parsing.
    A large event's bytes are the parser's own buffer (a bytearray, never changed again),
    with the marks found in it as it arrived.
    """

    __slots__ = ("_data", "_name", "_parsed", "marks", "raw")

    def __init__(self, raw: bytes | bytearray, marks: frozenset[bytes] | None = None) -> None:
        self.raw = raw
        # Which of the parser's marks the event holds (None: not looked for; see mentions).
        self.marks = marks
        self._parsed = False
        self._name: bytes | None = None
        self._data: bytes | None = None

    def mentions(self, mark: bytes) -> bool:
        """Whether the event's bytes contain `mark` (a look at the bytes, nothing parsed)."""
        marks = self.marks
        if marks is None or not isinstance(self.raw, bytearray):
            return mark in self.raw
        return mark in marks

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
        raw = self.raw if isinstance(self.raw, bytes) else bytes(self.raw)
        for line in _LINE_END.split(raw):
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
        return hash(bytes(self.raw))

    def __repr__(self) -> str:
        return f"Event({self.raw!r})"


class EventTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class SseParser:
    """Feed it bytes as they arrive; it returns the events completed by them.

    `marks` are the byte strings a relay will look for in events (Event.mentions): in a
    large event they are looked for as its bytes arrive, each byte once.
    """

    def __init__(self, max_event: int, marks: tuple[bytes, ...] = ()) -> None:
        self.max_event = max_event
        self.buffer = bytearray()
        # The start of the line being read, and where the search for its end resumes
        # (past what was already searched, so a long line is scanned only once).
        self.line_start = 0
        self.search_from = 0
        self.marks = marks
        # The pending event (at the buffer's start), once large: how far it was searched
        # for marks, and those found.
        self.marked_to = 0
        self.marked: set[bytes] = set()

    def whole(self, chunk: bytes) -> int:
        """How many events `chunk` is, when it is nothing but complete LF-framed ones; else 0.

        Most reads of a stream are exactly that (one event, or a few that arrived
        together), and a relay can pass such a chunk on as it is, without cutting it into
        events: the same events, in the same bytes, as `feed` would return.
        """
        if (
            self.buffer
            or not chunk.endswith(b"\n\n")
            or chunk.startswith(b"\n")
            or len(chunk) > self.max_event
            or b"\r" in chunk
            or b"\n\n\n" in chunk
        ):
            return 0
        return chunk.count(b"\n\n")

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
        size = len(buffer)
        lf = -2  # the next LF at or after search_from (-1: none), found again once passed
        while True:
            # The first line end: LF, or a CR before it (CR or CRLF).
            if lf < search_from and lf != -1:
                lf = buffer.find(b"\n", search_from)
            end = buffer.find(b"\r", search_from, size if lf < 0 else lf)
            if end >= 0:
                if end + 1 == size and not final:
                    search_from = end  # a lone CR at the end: wait to see whether LF follows
                    break
                after = end + 2 if end + 1 == lf else end + 1
            elif lf >= 0:
                end, after = lf, lf + 1
            else:
                search_from = size
                break
            if end == line_start:
                # An empty line ends the event.
                if after - start > self.max_event:
                    raise EventTooLarge(self.max_event)
                if start == 0 and after >= LARGE_EVENT_BYTES:
                    events.append(self._large_event(after))
                    buffer, after, lf = self.buffer, 0, -2
                    size = len(buffer)
                else:
                    with memoryview(buffer) as view:  # one copy, not a slice and then bytes
                        events.append(Event(view[start:after].tobytes()))
                start = after
            line_start = search_from = after
        if start:
            del buffer[:start]
            line_start -= start
            search_from -= start
        self.line_start, self.search_from = line_start, search_from
        if len(buffer) > self.max_event:
            raise EventTooLarge(self.max_event)
        if len(buffer) >= LARGE_EVENT_BYTES:
            self._mark(len(buffer))
        return events

    def _mark(self, upto: int) -> None:
        """Look for the marks in the pending event's bytes that arrived since the last look."""
        buffer = self.buffer
        for mark in self.marks:
            # A mark may straddle the previous look's end: step back by its length.
            since = max(0, self.marked_to - len(mark) + 1)
            if mark not in self.marked and buffer.find(mark, since, upto) >= 0:
                self.marked.add(mark)
        self.marked_to = upto

    def _large_event(self, end: int) -> Event:
        """The event at the buffer's start, ending at `end`, handed out without a copy."""
        self._mark(end)
        held, marks = self.buffer, frozenset(self.marked)
        self.buffer = held[end:]  # what follows it (usually little) starts a new buffer
        del held[end:]
        self.marked_to = 0
        self.marked = set()
        return Event(held, marks)

    def close(self) -> list[Event]:
        """At the end of the stream: the event a final lone CR completes, if any."""
        return self._feed(b"", True)

    def pending(self) -> bytes:
        """Bytes of an event the stream has not finished (kept for the end of the stream)."""
        return bytes(self.buffer)
