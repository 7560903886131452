"""A minimal HTTP/1.1 server on asyncio + httptools, fast enough never to bottleneck a benchmark.

It speaks just what the simulator needs: keep-alive, Content-Length or chunked request
bodies, whole responses, and chunked streams that can be paced, stalled or cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, cast

import httptools

# The types live in wire.py, so the API modules need not import this one.
from grok_proxy.simulator.wire import (
    Cut,
    Handler,
    Outcome,
    Reply,
    Reset,
    SimRequest,
    Stream,
)

log = logging.getLogger("grok_proxy.simulator")


# Takes over a connection whose request asked to upgrade (simulator/realtime.py: WebSockets).
Upgrade = Callable[[asyncio.Transport, SimRequest, bytes], None]


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    phrase = HTTPStatus(reply.status).phrase if reply.status in _PHRASES else "Unknown"
    lines = [
        f"HTTP/1.1 {reply.status} {phrase}",
        f"content-type: {reply.content_type}",
        f"content-length: {len(reply.body)}",
    ]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


_PHRASES = set(HTTPStatus._value2member_map_)


class SimProtocol(asyncio.Protocol):
    """One client connection; requests on it are answered in order."""

    def __init__(
        self, handler: Handler, on_cancel: Callable[[bool], None], upgrade: Upgrade | None = None
    ) -> None:
        self.handler = handler
        self.on_cancel = on_cancel
        self.upgrade = upgrade
        self.upgrading: SimRequest | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.queue: list[tuple[SimRequest, bool]] = []
        self.task: asyncio.Task[None] | None = None
        self.streaming = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            request, transport = self.upgrading, self.transport
            if self.upgrade is None or request is None or transport is None:
                self._close()
                return
            self.transport = None
            self.upgrade(transport, request, data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self._write(encode_reply(Reply(400, b'{"error":"bad request"}'), keep_alive=False))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None and not self.task.done():
            # The client hung up while we were still answering: the proxy cancelled it.
            self.on_cancel(self.streaming)
            self.task.cancel()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path, _, query = self.url.decode("latin-1").partition("?")
        method = self.parser.get_method().decode()
        request = SimRequest(method, path, query, self.headers, b"".join(self.body))
        if self.upgrade is not None and self.parser.should_upgrade():
            self.upgrading = request  # handed over once the parser stops at the upgrade
            return
        self.queue.append((request, self.parser.should_keep_alive()))
        if self.task is None:
            self._next()

    # answering
    def _next(self) -> None:
        while self.queue and self.transport is not None:
            request, keep_alive = self.queue.pop(0)
            outcome = self.handler(request)
            if isinstance(outcome, Reset):
                self.transport.abort()
                return
            if isinstance(outcome, Reply):
                self._write(encode_reply(outcome, keep_alive))
                if not keep_alive:
                    self._close()
                continue
            # Reading goes on while answering: that is how a client's hang-up is noticed.
            self.task = asyncio.ensure_future(self._answer_later(outcome, keep_alive))
            return

    async def _answer_later(self, outcome: Outcome | Awaitable[Outcome], keep_alive: bool) -> None:
        try:
            if not isinstance(outcome, Reply | Stream | Reset):
                outcome = await outcome
            if isinstance(outcome, Reset):
                if self.transport is not None:
                    self.transport.abort()
                return
            if isinstance(outcome, Reply):
                self._write(encode_reply(outcome, keep_alive))
            else:
                await self._stream(outcome)
        except Cut:
            # close() (not abort()) flushes what was already sent, then drops the connection
            # without the chunked terminator: the reader sees a body cut short.
            self._close()
            return
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("simulator handler failed")
            self._write(encode_reply(Reply(500, b'{"error":"simulator bug"}'), keep_alive=False))
            keep_alive = False
        self.task = None
        self.streaming = False
        if not keep_alive:
            self._close()
        else:
            self._next()

    async def _stream(self, stream: Stream) -> None:
        self.streaming = True
        phrase = HTTPStatus(stream.status).phrase
        self._write(
            (
                f"HTTP/1.1 {stream.status} {phrase}\r\ncontent-type: {stream.content_type}\r\n"
                "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
            ).encode("latin-1")
        )
        async for event in stream.events:
            self._write(b"%x\r\n%b\r\n" % (len(event), event))
        self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start(
    host: str,
    port: int,
    handler: Handler,
    on_cancel: Callable[[bool], None],
    upgrade: Upgrade | None = None,
) -> asyncio.Server:
    """Listen on host:port and answer with `handler` (and upgrades with `upgrade`)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SimProtocol(handler, on_cancel, upgrade),
        host,
        port,
        reuse_address=True,
        # Bursts of thousands of connections (bench/run.py): the kernel caps it at somaxconn.
        backlog=8192,
    )


def serve(host: str, port: int, grpc_port: int = 0) -> None:
    """Run the simulator until interrupted (the `grok-proxy simulate` command)."""
    from grok_proxy.serving.http_protocol import raise_open_files_limit
    from grok_proxy.simulator.realtime import Realtime
    from grok_proxy.simulator.xai import Simulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    raise_open_files_limit()  # a stand-in for xAI holds as many streams as the proxy does
    try:
        import uvloop

        run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        run = asyncio.run

    async def main() -> None:
        simulator = Simulator()
        if grpc_port:
            from grok_proxy.simulator import grpc_sim

            # gRPC first: once HTTP answers, tests take the whole simulator to be up.
            # Held until serve_forever() returns: a grpc server no one holds stops serving.
            grpc_server = await grpc_sim.start(simulator, host, grpc_port)  # noqa: F841
            log.info("xAI simulator's gRPC API listening on %s:%d", host, grpc_port)
        realtime = Realtime(simulator)
        server = await start(host, port, simulator.handle, simulator.count_cancel, realtime.upgrade)
        log.info("xAI simulator listening on http://%s:%d/v1", host, port)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        run(main())
