"""The upstream HTTP client: pyreqwest (Rust reqwest/hyper), the only one, in production and tests.

Why pyreqwest: it brings HTTP/1.1 and HTTP/2 (ALPN), HTTP(S) proxies with CONNECT
tunnelling, rustls, pooling and streamed bodies both ways from a maintained library, at a
CPU cost per request closest to the hand-written HTTP/1.1 client it replaced
(docs/benchmarks.md has the A/B). What the forwarding path needs from it:

- proxies as curl has them: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY from the
  environment (reqwest reads them itself), or `XAI_PROXY_URL` (`direct` ignores them);
- certificates checked against the built-in roots plus any CA bundle named by
  `XAI_CA_BUNDLE`, `SSL_CERT_FILE` or `SSL_CERT_DIR` (from the environment or `.env`);
- connect, read (longest silence), write (upstream not taking the body) and pool timeouts;
- no redirects followed and nothing decompressed: the caller gets what upstream sent,
  `Content-Encoding` included.

Library exceptions become `grok_proxy.transport` failures here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

from pyreqwest import exceptions as lib
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.proxy import ProxyBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from grok_proxy.config import Settings
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
# Bodies above this go out as slices of it, so a stalled upstream is noticed between slices.
SLICE = 256 * 1024


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.xai_connect_timeout,
        read=settings.xai_read_timeout,
        write=settings.xai_write_timeout,
        pool=settings.xai_connect_timeout,
    )


def trusted_pems(settings: Settings) -> list[bytes]:
    """Extra root certificates: a company CA bundle, SSL_CERT_FILE, every file in SSL_CERT_DIR."""
    files = [Path(name) for name in (settings.xai_ca_bundle, settings.ssl_cert_file) if name]
    if settings.ssl_cert_dir:
        for directory in settings.ssl_cert_dir.split(":"):
            files.extend(sorted(p for p in Path(directory).glob("*") if p.is_file()))
    pems = []
    for path in files:
        data = path.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in data:
            pems.append(data)
    return pems


def build_client(settings: Settings) -> Client:
    """One pooled client per worker, configured from the settings."""
    timeouts = timeouts_of(settings)
    builder = (
        ClientBuilder()
        .user_agent(USER_AGENT)
        .follow_redirects(False)
        .referer(False)
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
        .connect_timeout(timedelta(seconds=timeouts.connect))
        .read_timeout(timedelta(seconds=timeouts.read))
        .pool_timeout(timedelta(seconds=timeouts.pool))
        .pool_idle_timeout(timedelta(seconds=30))
        .max_connections(settings.xai_pool_size)
        .http2(settings.xai_http2)
    )
    for pem in trusted_pems(settings):
        builder = builder.add_root_certificate_pem(pem)
    if settings.xai_proxy_url == "direct":
        builder = builder.no_proxy()
    elif settings.xai_proxy_url:
        builder = builder.proxy(ProxyBuilder.all(settings.xai_proxy_url).no_proxy(no_proxy_list()))
    return builder.build()


def no_proxy_list() -> str | None:
    return os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or None


class HttpClient:
    """Sends one request upstream and hands back the answer once its headers arrived."""

    def __init__(self, settings: Settings) -> None:
        self.timeouts = timeouts_of(settings)
        self.client = build_client(settings)

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> UpstreamAnswer:
        # pyreqwest fills a read-ahead buffer before it returns the response (64 KiB by
        # default): a paced stream would reach the caller only once that much arrived.
        builder = self.client.request(method, url).headers(headers).streamed_read_buffer_limit(1)
        pace: _WriteClock | None = None
        if isinstance(body, bytes):
            if len(body) > SLICE:
                pace = _WriteClock(self.timeouts.write)
                builder = builder.body_stream(pace.watch(_slices(body)))
            else:
                builder = builder.body_bytes(body)
        elif body is not None:
            pace = _WriteClock(self.timeouts.write)
            builder = builder.body_stream(pace.watch(body))
        request = builder.build_streamed()
        try:
            if pace is None:
                response = await request.__aenter__()
            else:
                async with pace:
                    response = await request.__aenter__()
        except TimeoutError as exc:
            if isinstance(exc, lib.PyreqwestError):
                raise failure_of(exc) from None
            raise WriteTimedOut(
                f"the upstream took none of the request body for {self.timeouts.write:g} s"
            ) from None
        except lib.PyreqwestError as exc:
            raise failure_of(exc) from None
        if response.status == 101:
            await request.__aexit__(None, None, None)
            raise ProtocolViolation("the upstream switched protocols on a plain HTTP request")
        return UpstreamAnswer(request, response)

    async def aclose(self) -> None:
        await self.client.close()


class UpstreamAnswer:
    """An upstream response whose body is read on demand (see transport.UpstreamResponse)."""

    __slots__ = ("raw_headers", "request", "response", "status", "version")

    def __init__(self, request: StreamRequest, response: Response) -> None:
        self.request = request
        self.response = response
        self.status = response.status
        self.version = response.version
        self.raw_headers: RawHeaders = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
        ]

    def header(self, name: str) -> str:
        return self.response.get_header(name) or ""

    async def read(self, limit: int) -> bytes:
        declared = self.header("content-length")
        try:
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            chunks = []
            size = 0
            while chunk := await self.read_chunk():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            await self.aclose()

    async def read_chunk(self) -> bytes:
        try:
            chunk = await self.response.body_reader.read_chunk()
        except lib.PyreqwestError as exc:
            raise failure_of(exc) from None
        return b"" if chunk is None else chunk.to_bytes()

    async def aclose(self) -> None:
        await self.request.__aexit__(None, None, None)


class _WriteClock:
    """The write timeout: upstream must take the next body slice within `limit` seconds.

    The clock runs only while a slice is waiting to be taken; while the caller is slow to
    send, it is the caller's time, not the upstream's. Expiry cancels the send through
    `asyncio.timeout`, which the client reports as WriteTimedOut.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> _WriteClock:
        self.timeout = asyncio.timeout(None)
        await self.timeout.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        timeout, self.timeout = self.timeout, None
        assert timeout is not None
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


def failure_of(exc: lib.PyreqwestError) -> UpstreamFailure:
    """pyreqwest's exception as one of the forwarder's failures, with its most specific cause."""
    causes = getattr(exc, "details", {}).get("causes") or []
    reason = causes[-1]["message"] if causes else exc.message
    # hyper marks errors of the connect phase (DNS, TCP, TLS, proxy tunnel) "(Connect)":
    # only those prove the request never left, whatever class pyreqwest gives them.
    connecting = any("(Connect)" in cause["message"] for cause in causes)
    if isinstance(exc, lib.ConnectTimeoutError) and connecting:
        return ConnectTimedOut(f"no connection within the connect timeout ({reason})")
    if isinstance(exc, lib.PoolTimeoutError):
        return PoolTimedOut(
            "no free upstream connection within the pool timeout (setting XAI_POOL_SIZE)"
        )
    if isinstance(exc, lib.WriteTimeoutError):
        return WriteTimedOut(f"the upstream stopped taking the request body ({reason})")
    if isinstance(exc, lib.RequestTimeoutError):
        # pyreqwest also calls a silent upstream a connect timeout while the request is
        # being sent; only a cause that names connecting makes it one.
        return ReadTimedOut(reason)
    if isinstance(exc, lib.BuilderError) or (isinstance(exc, lib.ConnectError) and connecting):
        return ConnectFailed(reason)
    return ConnectionLost(reason)
