"""Logging: one line per request, the request id on every line, never a key.

Keys appear only as a fingerprint (`sha256:` + 8 hex digits) that lets an operator tell
callers apart without being able to use or recover the key.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import sys
from contextvars import ContextVar
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

request_id: ContextVar[str] = ContextVar("request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def key_fingerprint(key: str) -> str:
    """A short, one-way tag for a key: safe to log, useless to an attacker."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:8]


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


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
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class DroppingQueueHandler(QueueHandler):
    """Hands records to the writer thread; drops them (counted) rather than ever block.

    Writing to stderr can block when whoever reads it (a terminal, `docker logs`, a pipe)
    falls behind, and a blocked write would stall the event loop and every request on it.
    """

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The request id lives in a context variable: read it here, on the request's task.
        record.request_id = request_id.get()
        prepared: logging.LogRecord = super().prepare(record)
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            DroppingQueueHandler.dropped += 1


_listener: QueueListener | None = None


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr in the chosen format, via a writer thread."""
    global _listener  # noqa: PLW0603 - one writer thread per process
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    if _listener is not None:
        _listener.stop()
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=10_000)
    _listener = QueueListener(records, writer)
    _listener.start()
    atexit.register(_listener.stop)
    handler = DroppingQueueHandler(records)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs each request at INFO: noise, and access lines are grok-proxy's own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # grok-proxy writes its own access lines (with request id and key fingerprint).
    logging.getLogger("uvicorn.access").disabled = True
