"""Logging: one line per request, the request id on every line, never a key.

Keys appear only as a fingerprint (`sha256:` + 8 hex digits) that lets an operator tell
callers apart without being able to use or recover the key.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

request_id: ContextVar[str] = ContextVar("request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


# Characters that could end a log line or disguise one: C0 and C1 controls, DEL, and the
# Unicode line and paragraph separators.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with control characters written as escapes (`\\n`), so it stays on one line."""
    if text.isprintable():
        return text
    return CONTROL_CHARACTERS.sub(
        lambda match: (
            _ESCAPES.get(match.group(), f"\\x{ord(match.group()):02x}")
            if ord(match.group()) <= 0xFF
            else f"\\u{ord(match.group()):04x}"
        ),
        text,
    )


class TextFormatter(logging.Formatter):
    """The text format, one line per record, whatever the logged values contain."""

    # Values (URLs, model names) come from callers: escaped, they cannot forge a line. A
    # traceback follows indented by four spaces, so every line at the margin is a record.

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage())
        request = escape_controls(str(getattr(record, "request_id", "-")))
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = self.formatException(record.exc_info)
        saved = record.msg, record.args, record.exc_info, record.exc_text, record.stack_info
        record.msg, record.args, record.exc_info, record.exc_text = message, None, None, None
        record.stack_info = None
        record.request_id = request
        try:
            line = super().format(record)
        finally:
            record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = saved
        extra = [text for text in (exc_text, saved[4]) if text]
        for text in extra:
            lines = text.splitlines() or [""]
            line += "\n" + "\n".join("    " + escape_controls(part) for part in lines)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access lines add their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class LogWriter(threading.Thread):
    """Writes records to a stream from its own thread, in batches, and never blocks a caller.

    Writing to stderr can block when whoever reads it (a terminal, `docker logs`, a pipe)
    falls behind, and a blocked write would stall the event loop and every request on it.
    So callers only append to a bounded deque (lock-free under the GIL); past the bound,
    lines are dropped and counted. The thread wakes at most every `pause` seconds and writes
    everything waiting at once: waking per line cost two thread switches per request, more
    than formatting the line (docs/benchmarks.md).
    """

    def __init__(
        self, stream: TextIO, formatter: logging.Formatter, limit: int = 10_000, pause: float = 0.01
    ) -> None:
        super().__init__(name="grok-proxy-log-writer", daemon=True)
        self.stream = stream
        self.formatter = formatter
        self.limit = limit
        self.pause = pause
        self.pending: deque[logging.LogRecord] = deque()
        self.wake = threading.Event()
        self.stopping = False
        self.dropped = 0
        self.direct = False
        self.lock = threading.Lock()

    def put(self, record: logging.LogRecord) -> None:
        if len(self.pending) >= self.limit:
            self.dropped += 1
            return
        self.pending.append(record)
        if self.direct:
            self.write_pending()
        elif not self.wake.is_set():
            self.wake.set()

    def write_through(self) -> None:
        """From now on, write each line before returning (and what is waiting, now).

        For shutdown: uvicorn ends the process by re-raising SIGTERM, which kills it without
        running atexit, so lines still waiting for the thread would be lost.
        """
        self.direct = True
        self.write_pending()

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait()
            self.wake.clear()
            self.write_pending()
            time.sleep(self.pause)
        self.write_pending()

    def write_pending(self) -> None:
        """Write every waiting line at once (from the thread, or a caller in write-through)."""
        lines = []
        with self.lock:
            while self.pending:
                record = self.pending.popleft()
                try:
                    lines.append(self.formatter.format(record))
                except Exception:  # one bad record must not stop the writer
                    lines.append(f"unformattable log record from {record.name}: {record.msg!r}")
            if self.dropped:
                # Counted from request threads without a lock: the figure may be a line short.
                dropped, self.dropped = self.dropped, 0
                lines.append(f"{dropped} log lines dropped: the log output was not keeping up")
            if lines:
                with contextlib.suppress(OSError, ValueError):
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.join(timeout=2)


class WriterHandler(logging.Handler):
    """The one handler on the root logger: renders the message now, writes it later."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: appending to the writer's deque is atomic.
        if not self.filter(record):
            return False
        # The request id lives in a context variable: read it here, on the request's task.
        record.request_id = request_id.get()
        # Render the message (and any traceback) now: its arguments may change later.
        record.message = record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = self.writer.formatter.formatException(record.exc_info)
            record.exc_info = None
        self.writer.put(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


_writer: LogWriter | None = None
# The (level, format) this process's logging was set up with.
_configured: tuple[str, str] | None = None


def write_through() -> None:
    """Shutdown has begun: write log lines synchronously from here on (see LogWriter)."""
    if _writer is not None:
        _writer.write_through()


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr in the chosen format, via a writer thread.

    Once per process: `grok-proxy serve` sets logging up before uvicorn starts, and each
    worker's app factory does too (a worker is a fresh process when there are several);
    with one worker both run in the same process, and the second call changes nothing.
    """
    global _writer, _configured  # noqa: PLW0603 - one writer thread per process
    if _configured == (level, fmt) and _writer is not None and _writer.is_alive():
        return
    # No format here shows the caller's file and line, thread or process, so do not compute
    # them for every record ("Optimization" in the logging HOWTO): a fifth of an access line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if _writer is not None:
        _writer.stop()
        atexit.unregister(_writer.stop)
    _writer = LogWriter(
        sys.stderr, JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT)
    )
    _writer.start()
    atexit.register(_writer.stop)
    _configured = (level, fmt)
    root = logging.getLogger()
    root.handlers[:] = [WriterHandler(_writer)]
    root.setLevel(level.upper())
    # httpx logs each request at INFO: noise, and access lines are grok-proxy's own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # grok-proxy writes its own access lines (with request id and key fingerprint).
    logging.getLogger("uvicorn.access").disabled = True
