"""grok-proxy's HTTP/1.1 client against real sockets on 127.0.0.1, byte by byte.

Each test scripts a tiny TCP server and checks what a caller of the proxy would notice:
the right bytes, connections reused or dropped, and failures named for what happened.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from grok_proxy import http1
from grok_proxy.http1 import Http1Connector
from grok_proxy.transport import Timeouts

# Production runs on uvloop; the standard loop must work too.
pytestmark = pytest.mark.anyio

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


@dataclass
class Server:
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    # Set when a connection's reader sees the client close it.
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Server], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    """One whole request (head and Content-Length body), or None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        server.client_closed.set()
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    request = head + await reader.readexactly(length)
    server.requests.append(request)
    return request


async def wait_for_close(reader: asyncio.StreamReader, server: Server) -> None:
    if await reader.read() == b"":
        server.client_closed.set()


def answer_each(*answers: bytes) -> Script:
    """Answer the requests on a connection with `answers` in turn (shared across connections)."""
    queue = list(answers)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while queue and await read_request(reader, s) is not None:
            writer.write(queue.pop(0))
            await writer.drain()
        await wait_for_close(reader, s)

    return script


@asynccontextmanager
async def serving(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server()
    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        writers.append(writer)
        try:
            await script(reader, writer, server)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            server.client_closed.set()
        finally:
            writer.close()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}"
    async with listener:
        yield server
        listener.close()
        for writer in writers:
            writer.transport.abort()  # ends every script still waiting on its client
        await asyncio.gather(*handlers)


def connector(pool_size: int = 10, read: float = 5.0, pool: float = 5.0) -> Http1Connector:
    return Http1Connector(pool_size, Timeouts(connect=5.0, read=read, pool=pool))


async def get(client: Http1Connector, url: str, method: str = "GET", **headers: str) -> bytes:
    response = await client.send(method, url, headers, b"{}" if method == "POST" else None)
    return await response.read()


async def test_keep_alive_reuses_one_connection_and_sends_exactly_what_was_given() -> None:
    async with serving(answer_each(OK, OK, OK)) as server:
        client = connector()
        for _ in range(3):
            response = await client.send(
                "POST", f"{server.url}/v1/files/a%2Fb?x=%2F", {"authorization": "Bearer k"}, b"{}"
            )
            assert response.status == 200
            assert response.header("content-type") == "application/json"
            assert await response.read() == b'{"ok":true}'
        await client.aclose()
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/files/a%2Fb?x=%2F HTTP/1.1\r\n")
    assert f"host: {server.url.removeprefix('http://')}\r\n".encode() in request
    assert b"authorization: Bearer k\r\n" in request
    assert b"content-length: 2\r\n" in request
    assert request.endswith(b"\r\n\r\n{}")
    assert b"user-agent: grok-proxy/" in request


async def test_the_callers_user_agent_is_kept() -> None:
    async with serving(answer_each(OK)) as server:
        await get(connector(), server.url, **{"user-agent": "OpenAI/Python 1.0"})
    assert b"user-agent: OpenAI/Python 1.0\r\n" in server.requests[0]
    assert b"grok-proxy/" not in server.requests[0]


@pytest.mark.parametrize(
    ("answer", "body", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", b"hello", True),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            b"hello",
            True,
        ),
        # No length at all: the body runs until the server closes the connection.
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello", b"hello", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"hello",
            True,
        ),
    ],
    ids=["content-length", "chunked", "until-close", "no-content", "after-100-continue"],
)
async def test_every_way_of_ending_a_body(answer: bytes, body: bytes, reused: bool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(reader, s) is not None:
            writer.write(answer)
            if b"connection: close" in answer:
                return
            await writer.drain()

    async with serving(script) as server:
        client = connector()
        assert await get(client, server.url) == body
        assert await get(client, server.url) == body
    assert server.connections == (1 if reused else 2)


async def test_a_stream_arrives_piece_by_piece_as_upstream_sends_it() -> None:
    go_on = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        await go_on.wait()  # the second piece exists only after the client got the first
        writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
        await wait_for_close(reader, s)

    async with serving(script) as server:
        response = await connector().send("GET", server.url, {}, None)
        assert await response.read_chunk() == b"first\n"
        go_on.set()
        assert await response.read_chunk() == b"second\n"
        assert await response.read_chunk() == b""
        await response.aclose()


async def test_the_read_timeout_names_the_silence_and_drops_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        await wait_for_close(reader, s)  # never answers

    async with serving(script) as server:
        with pytest.raises(httpx.ReadTimeout, match=r"sent nothing for 0\.2 seconds"):
            await get(connector(read=0.2), server.url)
        await asyncio.wait_for(server.client_closed.wait(), 5)


async def test_a_stream_gone_silent_mid_body_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await wait_for_close(reader, s)

    async with serving(script) as server:
        response = await connector(read=0.2).send("GET", server.url, {}, None)
        assert await response.read_chunk() == b"abc"
        with pytest.raises(httpx.ReadTimeout):
            await response.read_chunk()
        await response.aclose()
        await asyncio.wait_for(server.client_closed.wait(), 5)


async def test_a_body_cut_short_is_an_error_not_an_ending() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")

    async with serving(script) as server:
        with pytest.raises(httpx.ReadError, match="mid-response"):
            await get(connector(), server.url)


async def test_invalid_http_is_a_protocol_error() -> None:
    async with serving(answer_each(b"SMTP ready\r\n\r\n")) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="invalid HTTP"):
            await get(connector(), server.url)


async def test_a_refused_connection_names_where() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        await get(connector(), f"http://127.0.0.1:{port}")


def answer_then_close_on_the_next() -> Script:
    """Answers the first request on a connection; reads the second and hangs up unanswered."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(OK)
        await writer.drain()
        await read_request(reader, s)

    return script


@pytest.mark.parametrize(
    ("method", "headers", "resent"),
    [
        ("GET", {}, True),
        ("POST", {"idempotency-key": "abc"}, True),
        ("POST", {}, False),
    ],
    ids=["get", "post-with-idempotency-key", "post"],
)
async def test_a_kept_alive_connection_closed_unanswered_is_resent_only_when_safe(
    method: str, headers: dict[str, str], resent: bool
) -> None:
    async with serving(answer_then_close_on_the_next()) as server:
        client = connector()
        assert await get(client, server.url, method, **headers) == b'{"ok":true}'
        if resent:
            assert await get(client, server.url, method, **headers) == b'{"ok":true}'
            assert server.connections == 2
        else:
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await get(client, server.url, method, **headers)
            assert server.connections == 1  # upstream may be working on it: never sent twice


async def test_the_servers_keep_alive_timeout_is_respected() -> None:
    answer = b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok"
    async with serving(answer_each(answer, answer)) as server:
        client = connector()
        await get(client, server.url)
        await get(client, server.url)
    # The server keeps idle connections for 1 s; reusing one would race its close.
    assert server.connections == 2


async def test_pool_limit_waits_then_gives_up_with_a_clear_error() -> None:
    async with serving(answer_each(OK, OK, OK)) as server:
        client = connector(pool_size=1, pool=0.2)
        held = await client.send("GET", server.url, {}, None)
        with pytest.raises(httpx.PoolTimeout, match="XAI_POOL_SIZE"):
            await get(client, server.url)
        waiting = asyncio.ensure_future(get(client, server.url))
        await asyncio.sleep(0)  # let it queue for the slot
        assert await held.read() == b'{"ok":true}'  # reading releases the slot to the waiter
        assert await asyncio.wait_for(waiting, 5) == b'{"ok":true}'
    assert server.connections == 1


async def test_a_cancelled_request_drops_its_connection_and_frees_its_slot() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        if len(s.requests) == 0:
            await read_request(reader, s)
            await wait_for_close(reader, s)  # the first is never answered
        else:
            await answer_each(OK)(reader, writer, s)

    async with serving(script) as server:
        client = connector(pool_size=1)
        task = asyncio.ensure_future(get(client, server.url))
        while not server.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        # Upstream learns at once that nobody waits for the answer.
        await asyncio.wait_for(server.client_closed.wait(), 5)
        assert await get(client, server.url) == b'{"ok":true}'


async def test_an_unread_response_is_dropped_not_reused() -> None:
    async with serving(answer_each(OK, OK)) as server:
        client = connector()
        response = await client.send("GET", server.url, {}, None)
        await response.aclose()  # the caller went away before reading
        assert await get(client, server.url) == b'{"ok":true}'
    assert server.connections == 2


async def test_line_breaks_in_headers_are_refused_before_sending() -> None:
    async with serving(answer_each(OK)) as server:
        with pytest.raises(httpx.LocalProtocolError, match="line break"):
            await get(connector(), server.url, **{"x-a": "1\r\nx-injected: yes"})
    assert server.connections == 0


async def test_head_has_no_body_even_with_a_length() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n"
    async with serving(answer_each(answer, OK)) as server:
        client = connector()
        assert await get(client, server.url, "HEAD") == b""
        assert await get(client, server.url) == b'{"ok":true}'
    assert server.connections == 1


@pytest.fixture
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(context)
    return context


async def test_https_checks_the_certificate_against_trusted_roots(
    certificate_authority: trustme.CA,
    tls_server_context: ssl.SSLContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    roots = tmp_path / "roots.pem"
    certificate_authority.cert_pem.write_to_path(str(roots))
    monkeypatch.setenv("SSL_CERT_FILE", str(roots))
    http1.tls_context.cache_clear()
    try:
        async with serving(answer_each(OK, OK), tls=tls_server_context) as server:
            client = connector()
            assert await get(client, server.url) == b'{"ok":true}'
            assert await get(client, server.url) == b'{"ok":true}'
            await client.aclose()
        assert server.connections == 1
        assert b"host: localhost:" in server.requests[0]
    finally:
        http1.tls_context.cache_clear()


async def test_an_untrusted_certificate_is_refused(tls_server_context: ssl.SSLContext) -> None:
    http1.tls_context.cache_clear()  # certifi's roots: our test CA is not among them
    async with serving(answer_each(OK), tls=tls_server_context) as server:
        with pytest.raises(httpx.ConnectError, match="not trusted"):
            await get(connector(), server.url)
    assert server.requests == []


async def test_a_connection_the_server_closed_while_idle_is_never_used() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(OK)
        await writer.drain()  # then hang up, as servers do with idle connections

    async with serving(script) as server:
        client = connector()
        assert await get(client, server.url, "POST") == b'{"ok":true}'
        while client._open:  # wait until the client has seen the close
            await asyncio.sleep(0.01)
        # A POST is never resent, so it must not be sent on the dead connection at all.
        assert await get(client, server.url, "POST") == b'{"ok":true}'
    assert server.connections == 2
