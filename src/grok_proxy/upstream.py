"""The forwarding core: one path that every route uses to reach the upstream API.

A request travels: caller key -> body (size-checked) -> httpx request with allow-listed
headers -> upstream status checked -> plain body back, or SSE relayed event by event.
Every wait on the upstream is raced against the caller hanging up, so an abandoned
request is closed upstream at once and nobody pays for tokens that no one reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from grok_proxy.config import Settings
from grok_proxy.errors import (
    Flavor,
    MissingApiKey,
    PayloadTooLarge,
    ProxyError,
    UpstreamTimeout,
    UpstreamUnreachable,
    envelope_bytes,
    upstream_error,
)
from grok_proxy.sse import SseRelay, wait_for_disconnect
from grok_proxy.transport import AiohttpTransport

log = logging.getLogger("grok_proxy.upstream")

T = TypeVar("T")

# Request headers a caller may send upstream. Everything else (Cookie, Host, hop-by-hop
# headers, proxy credentials) stays here; Authorization is rebuilt from the caller's key.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "content-type",
        "user-agent",
        "x-grok-conv-id",
        "anthropic-version",
        "anthropic-beta",
        "idempotency-key",
    }
)
FORWARDED_REQUEST_PREFIXES = ("x-stainless-",)

# Response headers worth handing back: ids for support tickets, rate-limit state, back-off.
RELAYED_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "retry-after",
        "retry-after-ms",
        "x-request-id",
        "request-id",
        "cf-ray",
        "location",
    }
)
RELAYED_RESPONSE_PREFIXES = ("x-ratelimit-", "ratelimit", "anthropic-ratelimit-", "x-xai-")

# Streams must not be compressed by anyone on the way: each event has to reach the
# caller as soon as it exists, and errors are injected at event boundaries.
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)

JsonHook = Callable[[bytes], bytes]


class ClientGone(Exception):
    """The caller hung up before the answer was ready."""


def caller_key(request: Request, *, allow_x_api_key: bool = False) -> str:
    """The caller's API key, from `Authorization: Bearer` (or `x-api-key` for Anthropic SDKs)."""
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    if allow_x_api_key:
        key = request.headers.get("x-api-key", "").strip()
        if key:
            return key
    where = "an `Authorization: Bearer <key>` header"
    if allow_x_api_key:
        where += " or an `x-api-key` header"
    raise MissingApiKey(f"No API key provided. Send your xAI API key in {where}.")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body is larger than the limit of {limit} bytes (setting MAX_BODY_BYTES)."
    )


def upstream_headers(request: Request, key: str) -> dict[str, str]:
    """Allow-listed caller headers plus the caller's key, as they go upstream."""
    headers = {
        name: value
        for name, value in request.headers.items()
        if name in FORWARDED_REQUEST_HEADERS or name.startswith(FORWARDED_REQUEST_PREFIXES)
    }
    headers["authorization"] = f"Bearer {key}"
    headers["accept-encoding"] = "identity"
    return headers


def relayed_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The upstream response headers the caller gets back."""
    return [
        (name.lower(), value)
        for name, value in response.headers.raw
        if (lowered := name.lower().decode("latin-1")) in RELAYED_RESPONSE_HEADERS
        or lowered.startswith(RELAYED_RESPONSE_PREFIXES)
    ]


def transport_failure(exc: httpx.TransportError, read_timeout: float) -> ProxyError:
    """Map a failure to reach or read the upstream onto 502 (unreachable) or 504 (too slow)."""
    if isinstance(exc, httpx.ReadTimeout):
        return UpstreamTimeout(f"The upstream API sent nothing for {read_timeout:g} seconds.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("The upstream API did not accept a connection in time.")
    return UpstreamUnreachable(f"Could not reach the upstream API: {_describe(exc)}.")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


async def until_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` unless the caller hangs up first; then cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        # Cancelling the request closes its upstream connection; nobody is waiting for it.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone
    return task.result()


class Upstream:
    """The shared HTTP client of one worker and the one way to forward a request through it."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.base_url = settings.xai_base_url
        timeout = httpx.Timeout(
            connect=settings.xai_connect_timeout,
            read=settings.xai_read_timeout,
            write=settings.xai_read_timeout,
            # aiohttp counts the wait for a free pooled connection into this one.
            pool=settings.xai_connect_timeout,
        )
        self.client = httpx.AsyncClient(
            transport=transport or AiohttpTransport(settings.xai_pool_size), timeout=timeout
        )
        # httpx's default headers (its user agent, gzip) are not the caller's: send none.
        self.client.headers = httpx.Headers()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def forward(
        self,
        request: Request,
        path: str,
        *,
        key: str,
        body: bytes | None = None,
        method: str | None = None,
        query: str | None = None,
        headers: dict[str, str] | None = None,
        flavor: Flavor = Flavor.OPENAI,
        done_markers: tuple[bytes, ...] = (),
        on_json: JsonHook | None = None,
    ) -> Response:
        """Send one request upstream and turn the answer into the caller's response.

        `body` goes upstream byte for byte. `done_markers` are what a complete stream of
        this route ends with; a stream that ends without one gets an error event.
        `on_json` rewrites a successful JSON body (for the routes that translate).
        """
        url = f"{self.base_url}{path}"
        if query:
            url = f"{url}?{query}"
        outgoing = upstream_headers(request, key)
        if headers:
            outgoing.update(headers)
        upstream_request = self.client.build_request(
            method or request.method, url, headers=outgoing, content=body
        )
        try:
            return await until_disconnect(
                request.receive,
                self._exchange(upstream_request, flavor, done_markers, on_json),
            )
        except ClientGone:
            log.info("caller hung up before the answer; upstream request closed: %s", path)
            # 499 is nginx's "client closed request": it only ever reaches the access log.
            return Response(status_code=499)
        except httpx.TransportError as exc:
            raise transport_failure(exc, self.settings.xai_read_timeout) from None

    async def _exchange(
        self,
        upstream_request: httpx.Request,
        flavor: Flavor,
        done_markers: tuple[bytes, ...],
        on_json: JsonHook | None,
    ) -> Response:
        response = await self.client.send(upstream_request, stream=True)
        content_type = response.headers.get("content-type", "")
        if response.status_code < 400 and content_type.startswith("text/event-stream"):
            # Ownership of the open response passes to the relay, which closes it.
            return SseRelay(
                response,
                headers=relayed_headers(response) + list(STREAM_HEADERS),
                flavor=flavor,
                done_markers=done_markers,
                describe_failure=lambda exc: transport_failure(exc, self.settings.xai_read_timeout),
            )
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        if response.status_code >= 400:
            error = upstream_error(response.status_code, body, content_type)
            answer = Response(
                envelope_bytes(flavor, error), error.status, media_type="application/json"
            )
            answer.raw_headers.extend(
                pair for pair in relayed_headers(response) if pair[0] != b"content-type"
            )
            return answer
        if on_json is not None and body and content_type.startswith("application/json"):
            body = on_json(body)
        answer = Response(body, response.status_code)
        answer.raw_headers.extend(relayed_headers(response))
        return answer
