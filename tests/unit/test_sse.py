"""The SSE parser: every framing a server may use, split anywhere, comes out as the same events."""

from __future__ import annotations

import pytest

from grok_proxy.calls import sse
from grok_proxy.calls.route import ANTHROPIC_END, OPENAI_END, RESPONSES_END
from grok_proxy.calls.sse import Event, EventTooLarge, SseParser

LF = b'data: {"a":1}\n\n: a comment\n\nevent: delta\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n'
EXPECTED = [
    (None, b'{"a":1}'),
    (None, None),
    (b"delta", b"line one\nline two"),
    (None, b"[DONE]"),
]


def framed(line_end: bytes) -> bytes:
    return LF.replace(b"\n", line_end)


def parse(stream: bytes, pieces: list[int]) -> list[Event]:
    parser = SseParser(max_event=1 << 20)
    events: list[Event] = []
    start = 0
    for end in [*pieces, len(stream)]:
        events += parser.feed(stream[start:end])
        start = end
    events += parser.close()
    assert parser.pending() == b""
    return events


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending_and_every_split_point_give_the_same_events(line_end: bytes) -> None:
    stream = framed(line_end)
    for split in range(len(stream) + 1):
        events = parse(stream, [split])
        assert [(event.name, event.data) for event in events] == EXPECTED, split
        # The raw bytes of the events are the stream itself, byte for byte.
        assert b"".join(event.raw for event in events) == stream


def test_several_events_in_one_read_and_one_event_over_many_reads() -> None:
    stream = framed(b"\r\n")
    one_read = parse(stream, [])
    byte_by_byte = parse(stream, list(range(1, len(stream))))
    assert one_read == byte_by_byte
    assert len(one_read) == 4


def test_data_field_details_follow_the_spec() -> None:
    events = parse(b"data:no space\ndata:  two spaces\ndata\n\n", [])
    assert events[0].data == b"no space\n two spaces\n"


def test_an_unfinished_event_stays_pending() -> None:
    parser = SseParser(max_event=1 << 20)
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.pending() == b"data: [DONE]\n"


def test_an_event_over_the_limit_is_refused() -> None:
    parser = SseParser(max_event=1024)
    parser.feed(b"data: " + b"x" * 1000)
    with pytest.raises(EventTooLarge):
        parser.feed(b"x" * 100)


def test_done_quoted_inside_content_is_not_the_end() -> None:
    quoted = parse(b'data: {"content":"data: [DONE]"}\n\n', [])[0]
    assert not OPENAI_END.reached(quoted)
    assert OPENAI_END.reached(parse(b"data: [DONE]\r\n\r\n", [])[0])


def test_terminal_event_types_by_name_or_by_json_type() -> None:
    named = parse(b"event: message_stop\ndata: {}\n\n", [])[0]
    assert ANTHROPIC_END.reached(named)
    typed = parse(b'data: {"type":"response.completed","response":{}}\n\n', [])[0]
    assert RESPONSES_END.reached(typed)
    mention = parse(
        b'data: {"type":"response.output_text.delta","delta":"response.completed"}\n\n', []
    )[0]
    assert not RESPONSES_END.reached(mention)


@pytest.mark.parametrize(
    "stream",
    [
        b"\n\ndata: a\n\n\n\ndata: b\n\n",  # empty lines before, between and after events
        b"data: a\n\ndata: b\ndata: c\n",  # a whole event, then one still open
        b": only a comment\n\nevent: x\n\n",
        b"data: a\n\ndata: b\r\n\r\n",  # LF, then CRLF
    ],
)
def test_a_whole_read_frames_events_as_byte_by_byte_reads_do(stream: bytes) -> None:
    # One read takes the split-on-blank-line shortcut; single bytes take the general scan.
    whole, single = SseParser(1 << 20), SseParser(1 << 20)
    events = whole.feed(stream)
    assert [(e.raw, e.name, e.data) for e in events] == [
        (e.raw, e.name, e.data) for b in range(len(stream)) for e in single.feed(stream[b : b + 1])
    ]
    assert whole.pending() == single.pending()


@pytest.mark.parametrize(
    "stream",
    [
        LF,
        framed(b"\r\n"),
        framed(b"\r"),
        b"data: a\r\rdata: b\n\n",  # CR, then LF
        b"\n\ndata: a\n\n\n\ndata: b\n\n",
        b"data: a\n\ndata: b\ndata: c\n",
        b": only a comment\n\nevent: x\n\n",
        b"data: a\n\ndata: b\r\n\r\n",
    ],
)
def test_a_read_relayed_uncut_holds_exactly_the_events_the_parser_finds(stream: bytes) -> None:
    # The relay passes a read on as it is when `whole` counts it; that must never differ
    # from cutting it into events, wherever the stream was split and whatever came before.
    for split in range(len(stream) + 1):
        for reads in ([stream[:split], stream[split:]], [stream[split:]]):
            counting, cutting = SseParser(1 << 20), SseParser(1 << 20)
            for read in reads:
                count = counting.whole(read)
                events = cutting.feed(read)
                if count:
                    assert count == len(events)
                    assert b"".join(event.raw for event in events) == read
                    assert cutting.pending() == b""
                else:
                    counting.feed(read)


def test_a_read_with_an_event_over_the_limit_is_not_relayed_uncut() -> None:
    assert SseParser(16).whole(b"data: " + b"x" * 20 + b"\n\n") == 0
    assert SseParser(16).whole(b"data: x\n\n") == 1


def test_large_events_are_the_same_events_with_marks_found_as_they_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every event here counts as large, so marks are looked for read by read, across
    # reads of every size (a mark cut between two reads included).
    monkeypatch.setattr(sse, "LARGE_EVENT_BYTES", 8)
    marks = (b'"usage"', b"[DONE]", b"message_stop")
    stream = (
        b'data: {"usage": {"total_tokens": 3}}\n\n'
        b"data: no mark in this one at all\r\n\r\n"
        b"event: message_stop\ndata: {}\n\n"
        b"data: [DONE]\n\n"
    )
    expected = SseParser(1 << 20).feed(stream, final=True)
    for size in range(1, 12):
        parser = SseParser(1 << 20, marks=marks)
        events: list[Event] = []
        for start in range(0, len(stream), size):
            events += parser.feed(stream[start : start + size])
        events += parser.close()
        assert [bytes(event.raw) for event in events] == [event.raw for event in expected]
        for event in events:
            assert event.marks is not None, size  # found as the bytes arrived
            for mark in marks:
                assert event.mentions(mark) == (mark in event.raw), (size, mark, event)


def test_a_large_event_is_relayed_without_being_copied() -> None:
    size = 2 * sse.LARGE_EVENT_BYTES
    parser = SseParser(4 * size, marks=(b"[DONE]",))
    parser.feed(b"data: " + b"x" * size)
    held = parser.buffer
    (event,) = parser.feed(b"\n\ndata: [DONE]")
    assert event.raw is held  # the parser's buffer became the event
    assert event.raw == b"data: " + b"x" * size + b"\n\n"
    assert not event.mentions(b"[DONE]")
    (done,) = parser.feed(b"\n\n")
    assert done.raw == b"data: [DONE]\n\n"
