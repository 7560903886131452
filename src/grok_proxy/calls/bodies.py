"""The caller's request body: read whole for routes that validate it, streamed otherwise.

Either way it is counted against MAX_BODY_BYTES as it arrives, and refused with 413 as
soon as it is known to be too large (from Content-Length, or when the count passes it).
A large body is parsed in a parser process (parse_elsewhere), so other callers of the
worker are not held up while it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar, cast

from pydantic_core import from_json

from grok_proxy.calls.asgi import Receive
from grok_proxy.calls.errors import CallerGone, InvalidRequest, PayloadTooLarge, ProxyError

log = logging.getLogger("grok_proxy.bodies")

T = TypeVar("T")

# Bodies this large are parsed in a parser process (parse_elsewhere). Parsing holds the GIL
# throughout (pydantic-core and orjson alike, so a thread would not help): 4 MiB of small
# JSON objects is about 15 ms of the event loop, 60 MiB was 480 ms (docs/reliability.md).
LARGE_BODY_BYTES = 4 * 1024 * 1024
# Parser processes per proxy worker: large bodies are rare, and each parse takes a core.
PARSERS = 1
# Their CPU priority below the workers' (nice): a large body's parse gives way to the loops.
PARSER_NICENESS = 10
# How often a parser looks whether its worker is still there.
WORKER_CHECK_SECONDS = 1.0
# Where a large body waits for its parser: memory, not disk, where the system offers it.
SPILL_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - mkstemp, 0600


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body is larger than the limit of {limit} bytes (setting MAX_BODY_BYTES)."
    )


def check_declared(content_length: str | None, limit: int) -> None:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large(limit)


async def read_body(receive: Receive, limit: int, content_length: str | None) -> bytes:
    """The whole request body, for routes that validate it."""
    check_declared(content_length, limit)
    # Read ASGI messages directly: Starlette's request.stream() is an async generator, and
    # registering one per request was a tenth of the proxy's CPU time.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CallerGone("The caller hung up while sending the request body.")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            if len(chunks) == 1:
                return chunk
            if size >= LARGE_BODY_BYTES:
                # Joining tens of MiB is tens of ms; CPython drops the GIL while it copies.
                joined: bytes = await asyncio.to_thread(b"".join, chunks)
                return joined
            return b"".join(chunks)


class StreamedBody:
    """The request body as it arrives, for the upstream client to pull chunk by chunk.

    A failure on the caller's side (too large, hung up) is kept in `failure`: the client
    only sees its pull fail, and the forwarder answers with this instead. `done` is set
    once the body is complete, so others may then listen on `receive`.
    """

    def __init__(self, receive: Receive, limit: int, content_length: str | None) -> None:
        check_declared(content_length, limit)
        self.receive = receive
        self.limit = limit
        self.failure: ProxyError | None = None
        self.done = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.failure = CallerGone("The caller hung up while sending the request body.")
                raise self.failure
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                self.failure = too_large(self.limit)
                raise self.failure
            more = message.get("more_body", False)
            if not more:
                self.done.set()
            if chunk:
                yield chunk
            if not more:
                return


# Where the team gate leaves the body it parsed (teams/gate.py), so that the route decides on
# the very value the gate checked and parses nothing a second time.
PARSED_BODY = "grok_proxy.parsed_body"


def parse_json(body: bytes) -> Any:
    """A JSON body as Python values; 400 when it is not JSON.

    NaN and Infinity are not JSON (RFC 8259) and xAI refuses them: refused here too, so no
    later step meets a value it cannot write back out.
    """
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidRequest(
            f"Request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None


def is_large(body: bytes) -> bool:
    """Whether parsing `body` here would hold the event loop too long (parse_elsewhere)."""
    return len(body) >= LARGE_BODY_BYTES


async def parse_elsewhere(body: bytes, extract: Callable[[Any], T]) -> T:
    """`extract` applied to the JSON value of `body`, both run in a parser process.

    Only `extract`'s result comes back, so it must be small: the parsed value of a large
    body is many objects, and carrying them back (or freeing them here) would hold the loop
    as long as parsing did. The checks still decide on one parse of the exact bytes that
    are forwarded: `extract` is the part of them that reads the value. Errors (not JSON,
    invalid) are raised here as ProxyErrors, as `parse_json` would.
    """
    return await elsewhere(body, partial(_parsed, extract))


def _parsed(extract: Callable[[Any], T], body: bytes) -> T:
    return extract(parse_json(body))


async def elsewhere(body: bytes, work: Callable[[bytes], T]) -> T:
    """`work(body)` run in a parser process (a large body's parse, or rewrite, or both).

    A ProxyError `work` raises is raised here; a large bytes result comes back through a
    file, as `body` goes there.
    """
    # The bytes go through a file the parser reads: written by the kernel from a thread,
    # while pickling them for a pipe would copy them holding the GIL (50 ms for 60 MiB).
    path = await asyncio.to_thread(_spill, body)
    try:
        # Submitted from a thread: the first submission starts the parser processes.
        pool = _parsers.get()
        job = await asyncio.to_thread(pool.submit, _work_on, path, work)
        try:
            outcome = await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            job.add_done_callback(_discard)  # the caller left: nobody will take a result
            raise
    except BrokenProcessPool:
        # A parser died (killed, out of memory): start afresh next time, decide here now.
        log.warning("a body parser process died; parsing this body in the worker itself")
        _parsers.restart()
        return work(body)
    finally:
        with contextlib.suppress(FileNotFoundError):  # the parser removes it once read
            os.unlink(path)
    if isinstance(outcome, ProxyError):
        raise outcome
    if isinstance(outcome, Spilled):  # a large result (a rewritten body): read the same way
        return cast(T, await asyncio.to_thread(outcome.take))
    return outcome


def _discard(job: Future[Any]) -> None:
    """Remove the file of a result nobody takes."""
    if not job.cancelled() and job.exception() is None and isinstance(job.result(), Spilled):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job.result().path)


def _spill(body: bytes) -> str:
    """`body` in a new file only this user may read (in memory where /dev/shm exists)."""
    fd, path = tempfile.mkstemp(prefix="grok-proxy-body-", dir=SPILL_DIR)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return path


class Spilled:
    """Bytes waiting in a file for the process that reads them (see _spill)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def take(self) -> bytes:
        """The bytes, once: the file is removed."""
        with open(self.path, "rb") as spilled:
            data = spilled.read()
        os.unlink(self.path)
        return data


def _work_on(path: str, work: Callable[[bytes], T]) -> T | ProxyError | Spilled:
    """In a parser process: the result, or the refusal as a value (to be raised there)."""
    body = Spilled(path).take()
    try:
        result = work(body)
    except ProxyError as refusal:
        return refusal
    if isinstance(result, bytes) and is_large(result):
        return Spilled(_spill(result))
    return result


def _start_parser(worker: int) -> None:
    """In a new parser process: yield the CPU to the worker, leave Ctrl-C to it, and end
    with it.

    A worker that exits cleanly stops its parsers; one killed by a signal (uvicorn ends
    with the SIGTERM it received) cannot, and the parser would wait for work forever.
    """
    os.nice(PARSER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with, args=(worker,), daemon=True).start()


def _end_with(worker: int) -> None:
    while os.getppid() == worker:
        time.sleep(WORKER_CHECK_SECONDS)
    os._exit(0)


class Parsers:
    """The parser processes, started on first use (most proxies never see a large body).

    Spawned, not forked: a fork would copy the worker's threads' locks mid-use.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pool: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self.pool is None:
            spawn = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(
                self.processes,
                mp_context=spawn,
                initializer=_start_parser,
                initargs=(os.getpid(),),
            )
        return self.pool

    def restart(self) -> None:
        """Drop a broken pool; the next large body starts a new one."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None


_parsers = Parsers(PARSERS)
