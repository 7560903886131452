"""The app in-process, in front of a real local HTTP server whose answers come from respx.

The proxy's own upstream client (the one production runs) sends every request over a real
loopback socket; the server hands it to a respx router, so tests declare answers and read
what arrived as respx lets them. A respx side effect that raises stands for a failure on
the wire: `httpx.ReadTimeout` keeps the connection silent, any other transport error
drops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import httpx
import respx

from grok_proxy.app import create_app
from grok_proxy.config import Settings

UPSTREAM = "https://api.x.ai/v1"
KEY = "xai-unit-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}


async def _serve_connection(
    router: respx.Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, reader)
            if request is None:
                return
            try:
                response = await router.async_handler(request)
            except httpx.ReadTimeout:
                await reader.read()  # silent until the proxy gives up and hangs up
                return
            except httpx.TransportError:
                writer.transport.abort()  # the connection drops without an answer
                return
            headers = list(response.headers.raw)
            if not any(
                name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers
            ):
                headers.append((b"transfer-encoding", b"chunked"))
            writer.write(conn.send(h11.Response(status_code=response.status_code, headers=headers)))
            try:
                chunks = [response.content] if response.is_stream_consumed else response.aiter_raw()
                async for chunk in _each(chunks):
                    writer.write(conn.send(h11.Data(data=chunk)))
                    await writer.drain()
            except httpx.ReadTimeout:
                await reader.read()  # stalls mid-body until the proxy gives up
                return
            except httpx.TransportError:
                writer.transport.abort()
                return
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (ConnectionError, h11.RemoteProtocolError):
        return
    finally:
        writer.close()


async def _each(chunks: Any) -> AsyncIterator[bytes]:
    if isinstance(chunks, list):
        for chunk in chunks:
            yield chunk
    else:
        async for chunk in chunks:
            yield chunk


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> httpx.Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            if not data and conn.their_state is h11.IDLE:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return httpx.Request(
                head.method.decode(),
                UPSTREAM.removesuffix("/v1") + head.target.decode("latin-1"),
                headers=list(head.headers),
                content=bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None


@asynccontextmanager
async def serving(router: respx.Router) -> AsyncIterator[str]:
    """A loopback HTTP/1.1 server answering from `router`; yields its base URL."""
    open_writers: set[asyncio.StreamWriter] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_writers.add(writer)
        try:
            await _serve_connection(router, reader, writer)
        finally:
            open_writers.discard(writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        # Dropping the connections ends every handler (a silent one included) on its own.
        for writer in list(open_writers):
            writer.transport.abort()
        await server.wait_closed()


@asynccontextmanager
async def proxied(router: respx.Router, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app, whose upstream is served from `router`."""
    # Retries are off unless a test asks for them: most tests look at a single exchange.
    settings = {"xai_max_retries": 0, **settings}
    async with serving(router) as base_url:
        settings.setdefault("xai_base_url", base_url)
        app = create_app(Settings(**settings))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
                yield client


def upstream() -> respx.Router:
    return respx.Router(base_url=UPSTREAM, assert_all_called=False)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}], **fields}
