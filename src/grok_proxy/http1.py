"""grok-proxy's own HTTP/1.1 client: a keep-alive pool of asyncio protocols parsed by httptools.

Why not aiohttp's client: replacing it with this one took the proxy's CPU per forwarded
request from about 395 to 268 µs, and its throughput up by half (docs/benchmarks.md).
It does what the forwarding path needs and nothing else:

- http and https; certificates are verified against certifi's roots, or against
  SSL_CERT_FILE / SSL_CERT_DIR when set (as httpx does);
- keep-alive: connections go back to the pool only after a complete response, are reused
  newest first, and expire after 30 s idle (sooner if the server's Keep-Alive says so);
- one limit on open connections; a request waits up to the pool timeout for a free one;
- connect and read timeouts, where "read" is the longest silence while waiting for bytes;
- back-pressure both ways: stop reading while the caller is slower than upstream, wait
  while the kernel's send buffer is full;
- bodies delimited by Content-Length, chunked encoding or the end of the connection;
- cancel-safety: a caller that gives up mid-request drops the connection, which is how
  upstream learns to stop generating.

Not done, because the forwarding path has no use for it: HTTP proxies (HTTPS_PROXY),
HTTP/2, redirects, cookies, decompression (we send `Accept-Encoding: identity`).

Failures use httpx's exception types, whose names say what happened, like the other
backends in `transport.py`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version

import certifi
import httptools
import httpx

from grok_proxy.transport import RawHeaders, Timeouts

KEEPALIVE_EXPIRY = 30.0
# Stop reading from upstream while this much is buffered and the caller has not taken it.
READ_HIGH_WATER = 256 * 1024
# Bodies up to this size go out in the same write as the head (one syscall, one copy).
INLINE_BODY = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
USER_AGENT = f"grok-proxy/{version('grok-proxy')}"


@cache
def tls_context() -> ssl.SSLContext:
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()  # OpenSSL reads both variables
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL's requests go, parsed once per base URL."""

    host: str
    port: int
    host_header: str
    tls: ssl.SSLContext | None

    @staticmethod
    def parse(origin: str) -> Origin:
        url = httpx.URL(origin)
        if url.scheme not in ("http", "https") or not url.host:
            raise httpx.UnsupportedProtocol(f"Cannot send to {origin!r}: not an http(s) URL.")
        default = 443 if url.scheme == "https" else 80
        port = url.port or default
        host = url.host
        shown = f"[{host}]" if ":" in host else host
        return Origin(
            host,
            port,
            shown if port == default else f"{shown}:{port}",
            tls_context() if url.scheme == "https" else None,
        )


def split_url(url: str) -> tuple[str, str]:
    """("https://host:port", "/path?query"): the target is sent exactly as given."""
    scheme, sep, rest = url.partition("://")
    host, slash, target = rest.partition("/")
    return f"{scheme}{sep}{host}", f"/{target}" if slash else "/"


def encode_head(
    method: str, target: str, host: str, headers: dict[str, str], length: int | None
) -> bytes:
    """The request line and headers; `length` is the body's (None: no body at all)."""
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if "user-agent" not in headers:
        lines.append(f"user-agent: {USER_AGENT}\r\n")
    if length is not None:
        lines.append(f"content-length: {length}\r\n")
    # One check over everything that came from outside: no line breaks smuggled into a header.
    if _has_line_break(target, headers):
        raise httpx.LocalProtocolError("A header or the path contains a line break.")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("A header holds characters HTTP/1.1 cannot carry.") from None


def _has_line_break(target: str, headers: dict[str, str]) -> bool:
    text = target + "".join(headers) + "".join(headers.values())
    return "\r" in text or "\n" in text or "\0" in text


class _Connection(asyncio.Protocol):
    """One socket to upstream; hands received bytes to the response currently using it."""

    def __init__(self, origin: Origin, open_connections: set[_Connection]) -> None:
        self.origin = origin
        self.open_connections = open_connections
        self.transport: asyncio.Transport | None = None
        self.response: Http1Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.expiry = KEEPALIVE_EXPIRY
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing asked: a server saying goodbye, or garbage
            self.abort()
            return
        response.feed(data)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.open_connections.discard(self)
        if self.response is not None:
            self.response.connection_lost()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(httpx.WriteError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def write(self, head: bytes, body: bytes | None) -> None:
        assert self.transport is not None
        if body and len(body) > INLINE_BODY:
            self.transport.write(head)
            self.transport.write(body)
        else:
            self.transport.write(head + body if body else head)
        if self._writable is not None:
            await self._writable

    def abort(self) -> None:
        self.closed = True
        self.open_connections.discard(self)
        if self.transport is not None:
            self.transport.abort()


class Http1Response:
    """The answer on one connection: the parser feeds it, the forwarding path reads it."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_error",
        "_headers",
        "_headers_done",
        "_keep_alive",
        "_length_known",
        "_paused",
        "_released",
        "_silence_timer",
        "_since",
        "_waiter",
        "connection",
        "head_only",
        "parser",
        "pool",
        "raw_headers",
        "read_timeout",
        "received",
        "status",
    )

    def __init__(
        self, connection: _Connection, pool: Http1Connector, read_timeout: float, head_only: bool
    ) -> None:
        self.connection = connection
        self.pool = pool
        self.read_timeout = read_timeout
        self.head_only = head_only
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.raw_headers: RawHeaders = []
        self.received = False
        self._headers: dict[str, str] | None = None
        self._headers_done = False
        self._length_known = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._keep_alive = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._since = 0.0  # when upstream last sent bytes or a wait began
        self._silence_timer: asyncio.TimerHandle | None = None
        self._released = False

    # --- fed by the connection ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received = True
        if self._waiter is not None:
            self._since = self._waiter.get_loop().time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"upstream sent invalid HTTP: {exc}"))
            self.connection.abort()

    def connection_lost(self) -> None:
        if self._complete:
            return
        if self._headers_done and not self._length_known:
            self._complete = True  # the body ran until the connection closed, as announced
        elif self._headers_done:
            self._fail(httpx.ReadError("upstream closed the connection mid-response"))
        else:
            self._fail(
                httpx.RemoteProtocolError("upstream closed the connection without answering")
            )
        self._wake()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: never reuse this connection
            self._keep_alive = False
            self.connection.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            self._length_known = True
        elif lowered == b"keep-alive":
            self._read_keep_alive(value)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and friends: the real answer follows
            self.raw_headers = []
            self._length_known = False
            return
        self.status = status
        self._headers_done = True
        if self.head_only or status in (204, 304):
            self._length_known = True
        if self.head_only:
            self._message_complete()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused:
            self._paused = True
            assert self.connection.transport is not None
            self.connection.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._headers_done and not self._complete:
            self._message_complete()
            self._wake()

    def _message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self.parser.should_keep_alive()

    def _read_keep_alive(self, value: bytes) -> None:
        for part in value.split(b","):
            key, _, seconds = part.strip().partition(b"=")
            if key.lower() == b"timeout" and seconds.strip().isdigit():
                # Leave a second's margin: the server closes at its timeout, maybe early.
                self.connection.expiry = min(KEEPALIVE_EXPIRY, int(seconds) - 1.0)

    # --- waiting ------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        waiter = self._waiter = loop.create_future()
        # One timer per response that re-arms itself, not one per wait: a stream waits
        # once per chunk, and creating and cancelling a timer cost more than the chunk.
        if self._silence_timer is None:
            self._silence_timer = loop.call_later(self.read_timeout, self._check_silence)
        try:
            await waiter
        finally:
            self._waiter = None

    def stop_timer(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None

    def _check_silence(self) -> None:
        waiter = self._waiter
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._since
        if waiter is not None and not waiter.done() and silent >= self.read_timeout:
            self._silence_timer = None
            waiter.set_exception(
                httpx.ReadTimeout(f"upstream sent nothing for {self.read_timeout:g} seconds")
            )
        else:  # not waiting now, or bytes came meanwhile: look again when the time may be up
            delay = self.read_timeout - silent if waiter is not None else self.read_timeout
            self._silence_timer = loop.call_later(max(delay, 0.001), self._check_silence)

    async def wait_for_head(self) -> None:
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    # --- the UpstreamResponse interface -------------------------------------------------

    def header(self, name: str) -> str:
        if self._headers is None:
            self._headers = {}
            for key, value in self.raw_headers:
                self._headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        return self._headers.get(name, "")

    async def read(self) -> bytes:
        try:
            chunks = []
            while chunk := await self.read_chunk():
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            await self.aclose()

    async def read_chunk(self) -> bytes:
        while True:
            if self._chunks:
                chunks = self._chunks
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks = []
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    if not self.connection.closed:
                        assert self.connection.transport is not None
                        self.connection.transport.resume_reading()
                return data
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        self.stop_timer()
        reusable = (
            self._complete
            and self._keep_alive
            and not self._chunks
            and self._error is None
            and not self.connection.closed
        )
        self.pool.release(self.connection, reusable)


class Http1Connector:
    """The production `Connector`: one pool per worker, shared by every route."""

    def __init__(self, pool_size: int, timeouts: Timeouts) -> None:
        self.pool_size = pool_size
        self.timeouts = timeouts
        self._in_use = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._origins: dict[str, Origin] = {}
        self._open: set[_Connection] = set()

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Http1Response:
        origin_text, target = split_url(url)
        origin = self._origins.get(origin_text)
        if origin is None:
            origin = self._origins[origin_text] = Origin.parse(origin_text)
        length = None if body is None else len(body)
        head = encode_head(method, target, origin.host_header, headers, length)
        await self._take_slot()
        try:
            connection = self._idle_connection(origin)
            if connection is not None:
                try:
                    return await self._exchange(connection, method, head, body)
                except httpx.RemoteProtocolError:
                    # A kept-alive connection the server closed just as we sent. Sending
                    # again is safe only for a request that says so (the rule Go's client
                    # follows); otherwise upstream may be working on it.
                    answered = connection.response is not None and connection.response.received
                    if answered or not (method in IDEMPOTENT or "idempotency-key" in headers):
                        raise
            return await self._exchange(await self._connect(origin), method, head, body)
        except BaseException:
            self._give_back_slot()
            raise

    async def _exchange(
        self, connection: _Connection, method: str, head: bytes, body: bytes | None
    ) -> Http1Response:
        response = Http1Response(connection, self, self.timeouts.read, head_only=method == "HEAD")
        connection.response = response
        try:
            await connection.write(head, body)
            await response.wait_for_head()
        except BaseException:
            # Cancelled (the caller hung up), timed out or failed: this connection is done.
            response.stop_timer()
            connection.abort()
            raise
        return response

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"{origin.host}:{origin.port}"
        try:
            async with asyncio.timeout(self.timeouts.connect):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, self._open),
                    origin.host,
                    origin.port,
                    ssl=origin.tls,
                    server_hostname=origin.host if origin.tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {where}") from None
        except ssl.SSLCertVerificationError as exc:
            raise httpx.ConnectError(
                f"{where} presented a certificate that is not trusted ({exc.verify_message})"
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        self._open.add(connection)
        return connection

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()  # newest first: the least likely to have been closed
            if connection.closed:
                continue
            if now - connection.idle_since >= connection.expiry:
                self._drop(connection)
                continue
            return connection
        return None

    def release(self, connection: _Connection, reusable: bool) -> None:
        """Called once per response: the connection goes back to the pool or is dropped."""
        connection.response = None
        if reusable:
            connection.idle_since = asyncio.get_running_loop().time()
            idle = self._idle.setdefault(connection.origin, deque())
            idle.append(connection)
            # The oldest sit at the left; let go of those past their expiry.
            while idle and (
                idle[0].closed or connection.idle_since - idle[0].idle_since >= idle[0].expiry
            ):
                self._drop(idle.popleft())
        else:
            self._drop(connection)
        self._give_back_slot()

    @staticmethod
    def _drop(connection: _Connection) -> None:
        connection.abort()

    async def _take_slot(self) -> None:
        if self._in_use < self.pool_size and not self._waiting:
            self._in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self.timeouts.pool):
                await waiter  # the releasing request hands its slot over
        except BaseException as exc:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._give_back_slot()  # handed over just as we gave up: pass it on
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(
                    f"all {self.pool_size} upstream connections stayed busy "
                    f"for {self.timeouts.pool:g} seconds (setting XAI_POOL_SIZE)"
                ) from None
            raise

    def _give_back_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; the count stays
                return
        self._in_use -= 1

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.abort()
        self._open.clear()
        self._idle.clear()
