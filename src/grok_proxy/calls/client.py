"""The upstream HTTP client: aiohttp, the only one, in production and tests.

Why aiohttp (docs/upstream-client.md has the measurements): it reads on the event loop
itself with a C parser (llhttp), so a relayed chunk costs no thread handoff, and
`readany()` hands over everything already buffered in one await; it is maintained, does
forward proxies with CONNECT tunnelling, takes a custom SSL context, and a cancelled read
loses nothing (so a relay can interrupt its wait for keep-alives) while closing a response
drops its connection at once (so a caller hanging up stops the upstream request). What the
forwarding path needs from it:

- the forward proxy and the trusted roots of the one upstream target (`upstream.py`), the
  same the WebSocket and gRPC relays use, decided once per worker: this client only ever
  talks to one upstream host;
- connect, read (longest silence) and write (upstream not taking the body) timeouts, and a
  bound on requests in flight (`XAI_POOL_SIZE`) with its own wait limit;
- no redirects followed, nothing decompressed, no cookies kept, no headers added: the
  upstream gets what the forwarder chose and the caller gets what upstream sent.

Library exceptions become `grok_proxy.transport` failures here and nowhere else.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import hdrs
from yarl import URL

from grok_proxy.calls.transport import (
    Body,
    BodyTooLarge,
    ConnectFailed,
    ConnectionLost,
    ConnectTimedOut,
    PoolTimedOut,
    ProtocolViolation,
    RawHeaders,
    ReadTimedOut,
    Timeouts,
    UpstreamFailure,
    WriteTimedOut,
)
from grok_proxy.calls.upstream import Upstream, upstream_of
from grok_proxy.config import Settings

# What aiohttp raises for a failed exchange (TimeoutError and ConnectionError are OSErrors).
LIBRARY_ERRORS = (aiohttp.ClientError, OSError)
# Bodies above this go out as slices of it, so a stalled upstream is noticed between slices.
SLICE = 256 * 1024
# Headers aiohttp would add on its own (Accept, Accept-Encoding, User-Agent, and a
# Content-Type for bytes): the forwarder decides every header that goes upstream.
NO_AUTO_HEADERS = frozenset({hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE})
# Idle keep-alive connections are closed after this many seconds (xAI's edge keeps 60+).
KEEPALIVE_SECONDS = 30.0
# Longest upstream response head line and header, as nginx's large_client_header_buffers.
MAX_HEAD_LINE = 16 * 1024


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.upstream.connect_timeout,
        read=settings.upstream.read_timeout,
        write=settings.upstream.write_timeout,
        pool=settings.upstream.connect_timeout,
    )


class HttpClient:
    """Sends one request upstream and hands back the answer once its headers arrived."""

    def __init__(self, settings: Settings, upstream: Upstream | None = None) -> None:
        upstream = upstream or upstream_of(settings)
        self.timeouts = timeouts_of(settings)
        self.proxy = upstream.proxy
        self.tls = upstream.tls
        # XAI_POOL_SIZE bounds the requests in flight, so the connections too; a request
        # waits for a slot at most the pool timeout.
        self.slots = asyncio.Semaphore(settings.upstream.pool_size)
        self.slots_total = settings.upstream.pool_size
        # Made on first use: aiohttp needs the running loop.
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                ssl=self.tls,
                limit=0,  # the slots bound the connections
                keepalive_timeout=KEEPALIVE_SECONDS,
                ttl_dns_cache=60,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                # sock_read is the longest silence, first byte or later; there is no
                # total here (the forwarder has its own, and streams have none).
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
                ),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=NO_AUTO_HEADERS,
                trust_env=False,  # proxies are decided once, above (no netrc either)
                max_line_size=MAX_HEAD_LINE,
                max_field_size=MAX_HEAD_LINE,
            )
        return session

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> UpstreamAnswer:
        clock: _WriteClock | None = None
        data: bytes | AsyncIterator[bytes] | None
        if body is None or (isinstance(body, bytes) and len(body) <= SLICE):
            data = body
        else:
            clock = _WriteClock(self.timeouts.write)
            data = clock.watch(_slices(body) if isinstance(body, bytes) else body)
        await self._take_slot()
        proxy = self.proxy
        try:
            request = self.session.request(
                method,
                # Encoded as received: yarl would otherwise normalise the path and query.
                URL(url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=proxy.url if proxy else None,
                proxy_headers=proxy.headers if proxy else None,
                chunked=None if clock is None or _declares_length(headers) else True,
            )
            if clock is None:
                response = await request
            else:
                async with clock:
                    response = await request
        except BaseException as exc:
            self.slots.release()
            if isinstance(exc, TimeoutError) and clock is not None and clock.expired:
                raise WriteTimedOut(
                    f"the upstream took none of the request body for {self.timeouts.write:g} s"
                ) from None
            if isinstance(exc, LIBRARY_ERRORS):
                raise failure_of(exc) from None
            raise
        answer = UpstreamAnswer(response, self.slots)
        if response.status == 101:
            await answer.aclose()
            raise ProtocolViolation("the upstream switched protocols on a plain HTTP request")
        return answer

    async def _take_slot(self) -> None:
        if not self.slots.locked():
            await self.slots.acquire()  # the common case: no timer to set up
            return
        try:
            async with asyncio.timeout(self.timeouts.pool):
                await self.slots.acquire()
        except TimeoutError:
            raise PoolTimedOut(
                f"all {self.slots_total} upstream slots stayed busy for "
                f"{self.timeouts.pool:g} s (setting XAI_POOL_SIZE)"
            ) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _declares_length(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "content-length" for name, _ in headers)


class UpstreamAnswer:
    """An upstream response whose body is read on demand (see transport.UpstreamResponse).

    Reads take what aiohttp has buffered, all of it, in one await. A read that is
    cancelled loses nothing (the bytes stay buffered for the next one), which the stream
    relay relies on to send keep-alives; closing an unfinished answer drops its
    connection, which is how the upstream learns that nobody is reading any more.
    """

    __slots__ = ("content", "raw_headers", "response", "slots", "status", "version")

    def __init__(self, response: aiohttp.ClientResponse, slots: asyncio.Semaphore) -> None:
        self.response = response
        # The request's slot, given back once, by aclose().
        self.slots: asyncio.Semaphore | None = slots
        self.status = response.status
        version = response.version
        self.version = f"HTTP/{version.major}.{version.minor}" if version else "HTTP/1.1"
        self.raw_headers: RawHeaders = list(response.raw_headers)
        self.content = response.content

    def header(self, name: str) -> str:
        return self.response.headers.get(name, "")

    async def read(self, limit: int) -> bytes:
        try:
            declared = self.header("content-length")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            chunks = []
            size = 0
            while chunk := await self.read_chunk():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            await self.aclose()

    async def read_chunk(self) -> bytes:
        try:
            return await self.content.readany()
        except LIBRARY_ERRORS as exc:
            raise failure_of(exc) from None

    def untimed(self) -> None:
        # aiohttp re-arms its read timer on every packet; a stream's relay times its
        # reads with one timer for the whole stream instead (relay.StreamClock).
        connection = self.response.connection
        if connection is not None and connection.protocol is not None:
            connection.protocol.read_timeout = None

    async def aclose(self) -> None:
        slots, self.slots = self.slots, None
        if slots is None:
            return
        slots.release()
        if self.content.is_eof() and self.content.exception() is None:
            self.response.release()  # read to its end: the connection is reused
        else:
            self.response.close()  # unfinished: the connection is dropped


class _WriteClock:
    """The write timeout: upstream must take the next body slice within `limit` seconds.

    The clock runs only while a slice is waiting to be taken; while the caller is slow to
    send, it is the caller's time, not the upstream's. Expiry cancels the send through
    `asyncio.timeout`, which the client reports as WriteTimedOut.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.timeout: asyncio.Timeout | None = None
        self.expired = False

    async def __aenter__(self) -> _WriteClock:
        self.timeout = asyncio.timeout(None)
        await self.timeout.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        timeout, self.timeout = self.timeout, None
        assert timeout is not None
        self.expired = timeout.expired()
        await timeout.__aexit__(*exc_info)  # type: ignore[arg-type]

    def _arm(self, armed: bool) -> None:
        if self.timeout is not None:
            when = asyncio.get_running_loop().time() + self.limit if armed else None
            self.timeout.reschedule(when)

    async def watch(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            self._arm(True)
            yield chunk
            self._arm(False)


async def _slices(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(body), SLICE):
        yield bytes(view[start : start + SLICE])


def _reason(exc: BaseException) -> str:
    """What went wrong, in the library's words, without URLs or repeated causes."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        text = getattr(error, "verify_message", "") or str(error)
        return f"the certificate of {exc.host} was refused: certificate verify failed: {text}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        # asyncio words a refusal "Connect call failed (addr)": the errno says it plainly.
        code = cause.errno if not isinstance(cause, socket.gaierror) else None
        text = os.strerror(code) if code else cause.strerror or str(cause) or type(cause).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {text}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.message or type(exc).__name__
    if isinstance(exc, aiohttp.ClientPayloadError):
        # The parser's own words ("Not enough data to satisfy content length header."),
        # without the status-and-message wrapping of its exception's text.
        parser_error = exc.__cause__
        detail = getattr(parser_error, "message", None) or str(parser_error or exc)
        text = f"the answer was cut short ({detail.strip().rstrip('.').lower()})"
    else:
        text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def failure_of(exc: BaseException) -> UpstreamFailure:
    """aiohttp's exception as one of the forwarder's failures, with its cause as the reason."""
    reason = _reason(exc)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimedOut(f"no connection within the connect timeout ({reason})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(reason)  # DNS, TCP, TLS or the proxy: nothing was sent
    if isinstance(exc, TimeoutError):
        return ReadTimedOut(reason)
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProtocolViolation(f"the upstream's answer is not valid HTTP: {reason}")
    return ConnectionLost(reason)
