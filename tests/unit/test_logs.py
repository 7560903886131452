"""Log lines: written by a thread in batches, complete, and never able to stall a request."""

from __future__ import annotations

import io
import logging
import threading

import orjson

from grok_proxy.observability import logs
from grok_proxy.observability.logs import (
    TEXT_FORMAT,
    JsonFormatter,
    LogWriter,
    WriterHandler,
    request_id,
)


class StuckStream(io.StringIO):
    """stderr whose reader has stopped reading: every write blocks until `unstick`."""

    def __init__(self) -> None:
        super().__init__()
        self.unstick = threading.Event()
        self.writing = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        self.unstick.wait()
        return super().write(text)


def logger_for(writer: LogWriter) -> logging.Logger:
    log = logging.Logger("grok_proxy.test")
    log.addHandler(WriterHandler(writer))
    return log


def test_a_stuck_log_output_never_blocks_the_caller_and_drops_are_reported() -> None:
    stream = StuckStream()
    writer = LogWriter(stream, logging.Formatter("%(message)s"), limit=100)
    writer.start()
    log = logger_for(writer)
    log.warning("first")
    assert stream.writing.wait(10)  # the writer thread is now stuck in write()
    for number in range(1000):
        log.warning("line %d", number)  # returns at once although nothing can be written
    assert writer.dropped == 900
    stream.unstick.set()
    writer.stop()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "first"
    assert lines[1:101] == [f"line {number}" for number in range(100)]
    assert lines[101] == "900 log lines dropped: the log output was not keeping up"


def test_lines_carry_the_request_id_the_message_as_it_was_and_the_traceback() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, logging.Formatter(TEXT_FORMAT))
    writer.start()
    log = logger_for(writer)
    changing = ["before"]
    token = request_id.set("req-1")
    try:
        log.warning("value %s", changing)
        changing[0] = "after"  # a later change must not alter the line already logged
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        request_id.reset(token)
    writer.stop()
    text = stream.getvalue()
    assert "WARNING grok_proxy.test [req-1] value ['before']" in text
    assert "ERROR grok_proxy.test [req-1] failed" in text
    assert "ValueError: boom" in text


def test_json_lines_include_fields_and_the_traceback() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, JsonFormatter())
    writer.start()
    log = logger_for(writer)
    log.info("access", extra={"fields": {"status": 200}})
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        log.exception("failed")
    writer.stop()
    access, failure = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert access["message"] == "access"
    assert access["status"] == 200
    assert failure["level"] == "error"
    assert "RuntimeError: bad" in failure["exception"]


def test_after_write_through_each_line_is_written_before_the_call_returns() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, logging.Formatter("%(message)s"), pause=3600)
    writer.start()
    log = logger_for(writer)
    writer.write_through()  # shutdown began: the process may be ended at any moment
    log.warning("shutting down")
    assert stream.getvalue() == "shutting down\n"
    writer.stop()


def test_logging_is_set_up_once_per_process_however_often_it_is_asked() -> None:
    # `grok-proxy serve` and the worker's app factory both ask, in one process with one worker.
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure_logging("info", "text")
        writer = logs._writer
        logs.configure_logging("info", "text")
        assert logs._writer is writer and writer is not None and writer.is_alive()
        assert len(root.handlers) == 1
        logs.configure_logging("info", "json")  # a different format is a new set-up
        assert logs._writer is not None and logs._writer is not writer
        assert not writer.is_alive()
        assert isinstance(logs._writer.formatter, JsonFormatter)
    finally:
        if logs._writer is not None:
            logs._writer.stop()
        logs._writer, logs._configured = None, None
        root.handlers[:], root.level = saved_handlers, saved_level
