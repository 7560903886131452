"""The pure parts of the guarded server protocol: the connection cap and refusal logging."""

from __future__ import annotations

import logging
import resource

import pytest

from grok_proxy.serving.http_protocol import Refusals, connection_cap, error_response


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
