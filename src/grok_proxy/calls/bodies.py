"""The caller's request body: read whole for routes that validate it, streamed otherwise.

Either way it is counted against MAX_BODY_BYTES as it arrives, and refused with 413 as
soon as it is known to be too large (from Content-Length, or when the count passes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pydantic_core import from_json

from grok_proxy.calls.asgi import Receive
from grok_proxy.calls.errors import CallerGone, InvalidRequest, PayloadTooLarge, ProxyError


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body is larger than the limit of {limit} bytes (setting MAX_BODY_BYTES)."
    )


def check_declared(content_length: str | None, limit: int) -> None:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large(limit)


async def read_body(receive: Receive, limit: int, content_length: str | None) -> bytes:
    """The whole request body, for routes that validate it."""
    check_declared(content_length, limit)
    # Read ASGI messages directly: Starlette's request.stream() is an async generator, and
    # registering one per request was a tenth of the proxy's CPU time.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CallerGone("The caller hung up while sending the request body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class StreamedBody:
    """The request body as it arrives, for the upstream client to pull chunk by chunk.

    A failure on the caller's side (too large, hung up) is kept in `failure`: the client
    only sees its pull fail, and the forwarder answers with this instead. `done` is set
    once the body is complete, so others may then listen on `receive`.
    """

    def __init__(self, receive: Receive, limit: int, content_length: str | None) -> None:
        check_declared(content_length, limit)
        self.receive = receive
        self.limit = limit
        self.failure: ProxyError | None = None
        self.done = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.failure = CallerGone("The caller hung up while sending the request body.")
                raise self.failure
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                self.failure = too_large(self.limit)
                raise self.failure
            more = message.get("more_body", False)
            if not more:
                self.done.set()
            if chunk:
                yield chunk
            if not more:
                return


# Where the team gate leaves the body it parsed (teams/gate.py), so that the route decides on
# the very value the gate checked and parses nothing a second time.
PARSED_BODY = "grok_proxy.parsed_body"


def parse_json(body: bytes) -> Any:
    """A JSON body as Python values; 400 when it is not JSON.

    NaN and Infinity are not JSON (RFC 8259) and xAI refuses them: refused here too, so no
    later step meets a value it cannot write back out.
    """
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidRequest(
            f"Request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None
