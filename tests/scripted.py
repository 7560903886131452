"""A scripted upstream: a loopback HTTP/1.1 server whose answers are exact byte sequences.

For what the simulator cannot be made to do on purpose: framing split at chosen bytes,
a reset mid-body, an upstream that never reads the request body, huge bodies counted
without being kept. It runs in its own thread, so tests that drive the real proxy
process with blocking clients can use it. Each request is recorded (method, target,
headers, body size and SHA-256) for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import h11

# A script step: bytes to write, a pause in seconds, or one of the words below.
RESET = "reset"  # drop the connection at once
STALL = "stall"  # stop writing; keep the connection open, unread, until the server stops
Step = bytes | float | str


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    size: int = 0
    sha256: str = ""


@dataclass
class Route:
    """The raw answer to one path: the bytes after the request, in steps."""

    steps: list[Step]
    # Do not read the request body at all (an upstream that stops taking it).
    ignore_body: bool = False


@dataclass
class Scripted:
    port: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


async def _handle(
    upstream: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        request: h11.Request | None = None
        while request is None:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            else:
                return
        path = request.target.decode("latin-1").split("?", 1)[0]
        seen = Seen(
            request.method.decode(),
            request.target.decode("latin-1"),
            {name.decode(): value.decode("latin-1") for name, value in request.headers},
        )
        upstream.seen.append(seen)
        route = upstream.routes.get(path) or Route([head(404, {"content-length": "0"})])
        if not route.ignore_body:
            digest = hashlib.sha256()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(1 << 20)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    seen.size += len(event.data)
                    digest.update(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            seen.sha256 = digest.hexdigest()
        for step in route.steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, float):
                await asyncio.sleep(step)
            elif step == RESET:
                writer.transport.abort()
                return
            elif step == STALL:
                # Read nothing more, so a request body still on its way backs up.
                transport = writer.transport
                assert isinstance(transport, asyncio.ReadTransport)
                transport.pause_reading()
                await upstream.stopping.wait()
                return
    except ConnectionError:
        return
    finally:
        writer.close()


@contextmanager
def scripted() -> Iterator[Scripted]:
    """Start the scripted upstream in a thread; routes may be set or changed at any time."""
    upstream = Scripted()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = upstream.stopping
        server = await asyncio.start_server(
            lambda r, w: _handle(upstream, r, w), "127.0.0.1", 0, limit=1 << 20
        )
        upstream.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield upstream
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
