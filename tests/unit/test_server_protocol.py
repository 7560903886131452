"""The pure parts of the guarded server protocol: the connection cap and refusal logging."""

from __future__ import annotations

import asyncio
import logging
import resource
from types import SimpleNamespace

import pytest

from grok_proxy.serving.http_protocol import HeldHead, Refusals, connection_cap, error_response


def test_connection_cap_fits_the_open_files_limit() -> None:
    assert connection_cap(4096, 1024) == 480  # two descriptors per caller, 64 kept free
    assert connection_cap(4096, 1_048_576) == 4096
    assert connection_cap(4096, resource.RLIM_INFINITY) == 4096
    assert connection_cap(4096, 10) == 1


def test_refusals_log_once_then_count(caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals(every=3600)
    with caplog.at_level(logging.WARNING, "grok_proxy.server"):
        for _ in range(5):
            refusals.note("head", "request refused with %s", 431)
        refusals.last["head"] -= 7200  # as if an hour had passed
        refusals.note("head", "request refused with %s", 431)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "request refused with 431",
        "request refused with 431 (4 more since the last such line)",
    ]


def test_error_response_is_a_complete_closing_answer() -> None:
    answer = error_response(431, "too big", "request_headers_too_large")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert b'"code":"request_headers_too_large"' in body


class Wire(asyncio.Transport):
    """A transport that records what would go out on the socket, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_an_answer_goes_out_as_one_write() -> None:
    wire = Wire()
    cycle = SimpleNamespace()
    cycle.transport = HeldHead(wire, cycle, asyncio.get_running_loop())
    cycle.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    cycle.transport.write(b'{"id": 1}')
    assert wire.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"id": 1}']
    assert cycle.transport is wire  # later writes (a stream's events) go straight out
    await asyncio.sleep(0)
    assert wire.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"id": 1}']


@pytest.mark.anyio
async def test_a_stream_head_goes_out_at_once_while_upstream_is_silent() -> None:
    wire = Wire()
    cycle = SimpleNamespace()
    cycle.transport = HeldHead(wire, cycle, asyncio.get_running_loop())
    cycle.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)  # the relay waits for upstream: the loop's turn ends
    assert wire.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    cycle.transport.write(b"data: 1\n\n")
    assert wire.writes == [b"HTTP/1.1 200 OK\r\n\r\n", b"data: 1\n\n"]


@pytest.mark.anyio
async def test_closing_writes_a_held_head_first() -> None:
    wire = Wire()
    cycle = SimpleNamespace()
    cycle.transport = HeldHead(wire, cycle, asyncio.get_running_loop())
    cycle.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    cycle.transport.close()
    assert wire.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert wire.closed
