"""The WebSocket relay's small decisions: close codes, reasons, sizes, URLs."""

from __future__ import annotations

import pytest

from grok_proxy.observability.metrics import close_code_label
from grok_proxy.relays.websocket import (
    CALLER_GONE,
    UPSTREAM_GONE,
    model_in,
    payload_size,
    sendable,
    short_reason,
)


@pytest.mark.parametrize(
    ("code", "gone", "expected"),
    [
        (1000, CALLER_GONE, 1000),
        (4321, CALLER_GONE, 4321),
        (1005, CALLER_GONE, 1000),  # an empty close frame: a normal close upstream
        (1006, CALLER_GONE, 1001),  # the caller vanished: going away
        (1006, UPSTREAM_GONE, 1014),  # the upstream vanished: bad gateway
        (1015, UPSTREAM_GONE, 1011),  # reported only, never sent: internal error
    ],
)
def test_close_codes_the_other_side_may_be_sent(
    code: int, gone: dict[int, int], expected: int
) -> None:
    assert sendable(code, gone) == expected


def test_close_reasons_fit_the_protocols_123_bytes_on_a_character_boundary() -> None:
    assert short_reason("fine") == "fine"
    long = "é" * 100  # 200 bytes
    cut = short_reason(long)
    assert len(cut.encode()) <= 123
    assert long.startswith(cut)


def test_metric_labels_group_application_close_codes() -> None:
    assert [close_code_label(c) for c in (None, 1000, 1011, 3001, 4999)] == [
        "-",
        "1000",
        "1011",
        "3xxx",
        "4xxx",
    ]


def test_payload_sizes_are_wire_bytes() -> None:
    assert payload_size(b"\x00\x01") == 2
    assert payload_size("abc") == 3
    assert payload_size("é✓") == 5


def test_the_model_of_a_responses_event() -> None:
    assert model_in('{"type": "response.create", "model": "grok-4"}') == "grok-4"
    assert model_in('{"type": "response.create"}') is None
    assert model_in("not json") is None
    assert model_in("[1]") is None
