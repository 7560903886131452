"""The bottom of the forwarding path: send one request upstream, get status, headers, bytes.

Two backends share one small interface (`Connector` -> `UpstreamResponse`):

- `Http1Connector` (grok_proxy.http1), used in production: an HTTP/1.1 client written for
  this one job, several times cheaper per request than aiohttp's or httpx's
  (docs/benchmarks.md).
- `HttpxConnector`, below, which drives any httpx transport, so unit tests mock the
  upstream with respx or `httpx.MockTransport`.

Both report failures with httpx's exception types, whose names say what happened: refused
(ConnectError), slow to connect (ConnectTimeout), silent (ReadTimeout), dropped (ReadError /
RemoteProtocolError). URLs are sent exactly as given: `%2F` stays `%2F`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    # Waiting for a free pooled connection.
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
