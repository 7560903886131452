"""The upstream HTTP client: pyqwest (Rust reqwest/hyper), the only one, in production and tests.

Why pyqwest: it brings HTTP/1.1 and HTTP/2 (ALPN), HTTP(S) proxies with CONNECT
tunnelling, rustls, pooling and streamed bodies both ways from a maintained library, and
a cancelled call aborts the request in Rust, so a caller hanging up closes the upstream
connection at once. pyreqwest costs less CPU but keeps a cancelled request running until
the upstream answers (docs/benchmarks.md has the A/B and the reasons). What the forwarding
path needs from it:

- proxies as curl has them: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY from the
  environment (reqwest reads them itself), or `XAI_PROXY_URL` (`direct` ignores them);
- certificates checked against certifi's roots plus any CA bundle named by
  `XAI_CA_BUNDLE`, `SSL_CERT_FILE` or `SSL_CERT_DIR` (from the environment or `.env`);
- connect, read (longest silence) and write (upstream not taking the body) timeouts;
- no redirects followed and nothing decompressed: the caller gets what upstream sent,
  `Content-Encoding` included.

Library exceptions become `grok_proxy.transport` failures here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from urllib.parse import urlsplit

import pyqwest

from grok_proxy.config import Settings
from grok_proxy.tls import trusted_roots
from grok_proxy.transport import (
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

log = logging.getLogger("grok_proxy.client")

USER_AGENT = f"grok-proxy/{version('grok-proxy')}"
# What pyqwest raises for a failed exchange (TimeoutError and ConnectionError are OSErrors).
LIBRARY_ERRORS = (OSError, pyqwest.RemoteProtocolError, pyqwest.ReadError, pyqwest.WriteError)
# Bodies above this go out as slices of it, so a stalled upstream is noticed between slices.
SLICE = 256 * 1024


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.xai_connect_timeout,
        read=settings.xai_read_timeout,
        write=settings.xai_write_timeout,
        pool=settings.xai_connect_timeout,
    )


def build_transport(settings: Settings) -> pyqwest.HTTPTransport:
    """One pooled transport per worker, configured from the settings."""
    timeouts = timeouts_of(settings)
    proxy = None
    if settings.xai_proxy_url == "direct":
        # Any explicit proxy rule turns the environment's off (as in reqwest). This one is
        # bypassed for the upstream's host, the only host this client talks to, so every
        # connection is direct (pyqwest does not honour a `*` exclusion).
        host = urlsplit(settings.upstream_base_url()).hostname or "*"
        proxy = pyqwest.Proxy("http://127.0.0.1:9", no_proxy=host)
    elif settings.xai_proxy_url:
        proxy = pyqwest.Proxy(settings.xai_proxy_url, no_proxy=no_proxy_list())
    return pyqwest.HTTPTransport(
        tls_ca_cert=trusted_roots(settings),
        http_version=None if settings.xai_http2 else pyqwest.HTTPVersion.HTTP1,
        proxy=proxy,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        pool_idle_timeout=30.0,
        enable_gzip=False,
        enable_brotli=False,
        enable_zstd=False,
        follow_redirects=False,
        # The proxy has its own metrics and logs; per-request spans would cost CPU.
        enable_otel=False,
    )


def no_proxy_list() -> str | None:
    return os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or None


class HttpClient:
    """Sends one request upstream and hands back the answer once its headers arrived."""

    def __init__(self, settings: Settings) -> None:
        self.timeouts = timeouts_of(settings)
        self.transport = build_transport(settings)
        # XAI_POOL_SIZE bounds the requests in flight (over HTTP/2 they share connections);
        # a request waits for a slot at most the pool timeout.
        self.slots = asyncio.Semaphore(settings.xai_pool_size)
        self.slots_total = settings.xai_pool_size

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> UpstreamAnswer:
        clock: _WriteClock | None = None
        content: bytes | AsyncIterator[bytes]
        if body is None:
            content = b""
        elif isinstance(body, bytes) and len(body) <= SLICE:
            content = body
        else:
            clock = _WriteClock(self.timeouts.write)
            content = clock.watch(_slices(body) if isinstance(body, bytes) else body)
        request = pyqwest.Request(method, url, pyqwest.Headers(headers), content)
        await self._take_slot()
        try:
            if clock is None:
                response = await self.transport.execute(request)
            else:
                async with clock:
                    response = await self.transport.execute(request)
        except BaseException as exc:
            self.slots.release()
            if isinstance(exc, TimeoutError) and clock is not None and clock.expired:
                raise WriteTimedOut(
                    f"the upstream took none of the request body for {self.timeouts.write:g} s"
                ) from None
            if isinstance(exc, LIBRARY_ERRORS):
                raise failure_of(exc) from None
            raise
        answer = UpstreamAnswer(response, self.slots.release)
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
        await self.transport.aclose()


class UpstreamAnswer:
    """An upstream response whose body is read on demand (see transport.UpstreamResponse).

    Each pyqwest read is a round trip into its Rust runtime (about 80 us of CPU and as
    much latency here, `bench/clients.py`), so reads are spared where the answer says
    enough: a body whose `Content-Length` has arrived is complete without asking for its
    end, and a complete body needs no close.

    Cancelling a pyqwest read aborts the response, but a stream's relay cancels its wait
    to send keep-alives: `read_chunk` waits on the read through `asyncio.shield`, and a
    read whose wait was cancelled is picked up by the next call, so no bytes are lost.
    """

    __slots__ = (
        "body",
        "left",
        "pending",
        "raw_headers",
        "release",
        "response",
        "status",
        "version",
    )

    def __init__(self, response: pyqwest.Response, release: Callable[[], None]) -> None:
        self.response = response
        # Gives the request's slot back; called once, by aclose().
        self.release: Callable[[], None] | None = release
        self.status = response.status
        self.version = str(response.http_version)
        self.raw_headers: RawHeaders = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
        ]
        self.body = aiter(response.content)
        declared = self.header("content-length")
        # Bytes still to come when the length is declared; 0 once the body is complete.
        self.left: int | None = int(declared) if declared.isdigit() else None
        self.pending: asyncio.Future[bytes] | None = None

    def header(self, name: str) -> str:
        return self.response.headers.get(name, "")

    async def read(self, limit: int) -> bytes:
        try:
            if self.left is not None and self.left > limit:
                raise BodyTooLarge(limit)
            chunks = []
            size = 0
            # Not shielded: nothing interrupts a whole read but a hang-up or a deadline,
            # and then the upstream read should stop.
            while chunk := await self._next(shield=False):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            await self.aclose()

    async def read_chunk(self) -> bytes:
        return await self._next(shield=True)

    async def _next(self, *, shield: bool) -> bytes:
        if self.left == 0:
            return b""
        pending = self.pending
        if pending is None:
            # pyqwest's __anext__ hands back an asyncio future: the read runs in Rust.
            pending = self.pending = self.body.__anext__()  # type: ignore[assignment]
            assert pending is not None
        try:
            chunk = bytes(await (asyncio.shield(pending) if shield else pending))
        except asyncio.CancelledError:
            if pending.cancelled():
                self.pending = None
            raise  # a shielded read stays pending for the next call
        except StopAsyncIteration:
            self.pending = None
            self.left = 0
            return b""
        except LIBRARY_ERRORS as exc:
            self.pending = None
            raise failure_of(exc) from None
        self.pending = None
        if self.left is not None:
            self.left -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()
        if self.pending is not None:
            self.pending.cancel()  # aborts the read in Rust
            self.pending = None
        if self.left != 0:  # a complete body has left nothing open to close
            self.left = 0
            await self.response.aclose()


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


def _causes(text: str) -> str:
    """`... for url (URL): client error (Connect): tcp connect error: refused` -> the causes.

    The chain is kept whole (a DNS error's own text contains `: `), without the URL and
    hyper's phase label, and cut short for an error message.
    """
    _, found, rest = text.partition("): ")
    rest = (rest if found else text).removeprefix("client error (Connect): ")
    return rest if len(rest) <= 200 else rest[:199] + "…"


def failure_of(exc: BaseException) -> UpstreamFailure:
    """pyqwest's exception as one of the forwarder's failures, with its causes as the reason."""
    text = str(exc)
    reason = _causes(text) or type(exc).__name__
    # hyper marks errors of the connect phase (DNS, TCP, TLS, proxy tunnel) "(Connect)":
    # only those prove that the request never left.
    connecting = "(Connect)" in text or isinstance(exc, pyqwest.ConnectTimeout)
    if isinstance(exc, TimeoutError):
        if connecting:
            return ConnectTimedOut(f"no connection within the connect timeout ({reason})")
        return ReadTimedOut(reason)
    if connecting:
        return ConnectFailed(reason)
    if isinstance(exc, pyqwest.RemoteProtocolError) and "switching protocols" in text.lower():
        return ProtocolViolation(reason)
    return ConnectionLost(reason)
