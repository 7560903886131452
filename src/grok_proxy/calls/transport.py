"""What the forwarder needs from an HTTP client, and the failures it can report.

The forwarder talks to the upstream only through `UpstreamResponse` and the failure tree
below; `grok_proxy.client` is the one implementation and maps its library's exceptions
onto this tree in one place. Failure tree::

    UpstreamFailure            the exchange with upstream failed; no answer to relay
    ├── NothingSent            the request never left: always safe to try again
    │   ├── ConnectFailed      refused, unresolvable, TLS rejected, proxy refused
    │   ├── ConnectTimedOut    no connection within the connect timeout
    │   └── PoolTimedOut       no free connection slot within the pool timeout
    ├── ReadTimedOut           upstream silent for longer than the read timeout
    ├── WriteTimedOut          upstream stopped taking the request body
    ├── ConnectionLost         dropped mid-exchange: reset, or a body cut short
    └── ProtocolViolation      an answer no HTTP peer may send (e.g. 101 to a plain request)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

RawHeaders = list[tuple[bytes, bytes]]

# What goes upstream as a body: bytes already read, or bytes as the caller sends them.
Body = bytes | AsyncIterator[bytes] | None


class UpstreamFailure(Exception):
    """The exchange with the upstream failed before a usable answer arrived."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NothingSent(UpstreamFailure):
    """The request did not reach the upstream at all."""


class ConnectFailed(NothingSent):
    pass


class ConnectTimedOut(NothingSent):
    pass


class PoolTimedOut(NothingSent):
    pass


class ReadTimedOut(UpstreamFailure):
    pass


class WriteTimedOut(UpstreamFailure):
    pass


class ConnectionLost(UpstreamFailure):
    pass


class ProtocolViolation(UpstreamFailure):
    pass


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    # Longest silence while waiting for upstream bytes, first or later.
    read: float
    # Longest time upstream may leave the request body untaken.
    write: float
    # Waiting for a free connection slot.
    pool: float


class UpstreamResponse(Protocol):
    """An upstream answer whose body has not been read yet."""

    status: int
    raw_headers: RawHeaders
    # "HTTP/1.1" or "HTTP/2.0", as negotiated.
    version: str

    def header(self, name: str) -> str:
        """One header's value ("" when absent); `name` is lower case."""

    async def read(self, limit: int) -> bytes:
        """The whole body; `BodyTooLarge` past `limit` bytes. Releases the connection."""

    async def read_chunk(self) -> bytes:
        """The next body bytes as soon as some arrive; b"" at the end.

        Safe to cancel while waiting (nothing is lost), so callers can time it out.
        """

    def untimed(self) -> None:
        """Stop timing reads: the caller times them itself (a stream's one clock)."""

    async def aclose(self) -> None:
        """Release the connection, or drop it if the body was not read to the end."""


class BodyTooLarge(Exception):
    """An answer the proxy must hold in memory is larger than its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit
