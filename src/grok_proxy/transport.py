"""The bottom of the forwarding path: send one request upstream, get status, headers, bytes.

Two backends share one small interface (`Connector` -> `UpstreamResponse`):

- `AiohttpConnector`, used in production. aiohttp's connection pool is several times faster
  than httpx's under concurrency, and talking to it directly saves the ~90 µs per request
  that building httpx Request/Response objects costs (docs/benchmarks.md).
- `HttpxConnector`, which drives any httpx transport, so unit tests mock the upstream with
  respx or `httpx.MockTransport`.

Both report failures with httpx's exception types, whose names say what happened: refused
(ConnectError), slow to connect (ConnectTimeout), silent (ReadTimeout), dropped (ReadError /
RemoteProtocolError). URLs are sent exactly as given: `%2F` stays `%2F`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    # Waiting for a free pooled connection; aiohttp counts connecting into it too.
    pool: float


class UpstreamResponse(Protocol):
    """An upstream answer whose body has not been read yet."""

    status: int
    raw_headers: RawHeaders

    def header(self, name: str) -> str:
        """One header's value ("" when absent); `name` is lower case."""

    async def read(self) -> bytes:
        """The whole body; the connection is released afterwards."""

    async def read_chunk(self) -> bytes:
        """The next body bytes as soon as some arrive; b"" at the end.

        Safe to cancel while waiting (nothing is lost), so callers can time it out.
        """

    async def aclose(self) -> None:
        """Release the connection, or drop it if the body was not read to the end."""


class Connector(Protocol):
    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        """Send a request and return once the response headers have arrived."""

    async def aclose(self) -> None:
        """Close every pooled connection."""


class AiohttpConnector:
    """Production backend: one aiohttp ClientSession per worker with an explicit pool size."""

    def __init__(self, pool_size: int, timeouts: Timeouts) -> None:
        self.pool_size = pool_size
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.pool,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Created lazily: aiohttp binds the session to the running event loop.
        connector = aiohttp.TCPConnector(
            limit=self.pool_size, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            # One session serves every caller: never keep one caller's cookies for the next.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        session = self._session or self._open_session()
        try:
            response = await session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=self.timeout,
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting upstream") from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout("upstream sent nothing in time") from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(_reason(exc)) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _AiohttpResponse:
    __slots__ = ("raw_headers", "response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status = response.status
        self.raw_headers: RawHeaders = list(response.raw_headers)

    def header(self, name: str) -> str:
        return self.response.headers.get(name, "")

    async def read(self) -> bytes:
        try:
            return await self.response.read()
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout("upstream went silent mid-response") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(_reason(exc)) from exc
        finally:
            await self.aclose()

    async def read_chunk(self) -> bytes:
        try:
            return await self.response.content.readany()
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout("upstream went silent mid-response") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(_reason(exc)) from exc

    async def aclose(self) -> None:
        if self.response.content.is_eof():
            self.response.release()  # back to the pool for the next request
        else:
            self.response.close()  # half-read: drop the connection, which tells upstream to stop


class HttpxConnector:
    """Test and fallback backend: any httpx transport (respx, MockTransport, httpx's own pool)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeouts: Timeouts) -> None:
        self.transport = transport
        self.timeout = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.read,
            "pool": timeouts.pool,
        }

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> UpstreamResponse:
        request = httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": self.timeout}
        )
        return _HttpxResponse(await self.transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self.transport.aclose()


class _HttpxResponse:
    __slots__ = ("body", "raw_headers", "response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.raw_headers: RawHeaders = list(response.headers.raw)
        self.body = response.aiter_raw()

    def header(self, name: str) -> str:
        return str(self.response.headers.get(name, ""))

    async def read(self) -> bytes:
        try:
            return await self.response.aread()
        finally:
            await self.response.aclose()

    async def read_chunk(self) -> bytes:
        return await anext(self.body, b"")

    async def aclose(self) -> None:
        await self.response.aclose()


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__
