"""Values from callers cannot forge log lines in the text format."""

from __future__ import annotations

import logging
import sys

from grok_proxy.observability.logs import TEXT_FORMAT, TextFormatter, escape_controls


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("grok_proxy.access", logging.INFO, __file__, 1, message, args, None)


def test_newlines_and_controls_in_values_stay_on_one_line() -> None:
    forged = "/health\n2026-01-01 00:00:00,000 INFO grok_proxy.access [-] GET /admin 200"
    line = TextFormatter(TEXT_FORMAT).format(record("%s %s", forged, "m\r\x1b[2J\u2028x"))
    assert len(line.splitlines()) == 1
    assert "\\n2026-01-01" in line
    assert "\\r\\x1b[2J\\u2028x" in line


def test_a_traceback_stays_below_its_record() -> None:
    try:
        raise ValueError("bad\nINFO forged")
    except ValueError:
        entry = record("failed on %s", "x")
        entry.exc_info = sys.exc_info()
    lines = TextFormatter(TEXT_FORMAT).format(entry).splitlines()
    assert all(line.startswith("    ") for line in lines[1:])
    assert "    INFO forged" in lines


def test_printable_text_is_unchanged() -> None:
    assert escape_controls("GET /api/v1/models grök-4 200") == "GET /api/v1/models grök-4 200"
