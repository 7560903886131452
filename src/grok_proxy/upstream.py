"""The forwarding core: one path that every route uses to reach the upstream API.

A request travels: caller key -> body (size-checked, validated by the route) -> the
connector with allow-listed headers, retried where that is safe -> upstream status
checked -> plain body back, or SSE relayed event by event. Every wait on the upstream
is watched for the caller hanging up, so an abandoned request is closed upstream at once
and nobody pays for tokens that no one reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.auth import CallerAuth
from grok_proxy.config import Settings
from grok_proxy.errors import (
    Flavor,
    InvalidRequest,
    NotOnThisUpstream,
    PayloadTooLarge,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
    envelope_bytes,
    upstream_error,
)
from grok_proxy.http1 import Http1Connector
from grok_proxy.lifecycle import Drain
from grok_proxy.presets import PRESETS, ModelNames, parse_aliases
from grok_proxy.record import RequestRecord, record_of
from grok_proxy.retry import ATTEMPTS_HEADER, RetryPolicy, Tally
from grok_proxy.sse import HangUpWatch, SseRelay
from grok_proxy.transport import Connector, HttpxConnector, RawHeaders, Timeouts
from grok_proxy.usage import from_body

log = logging.getLogger("grok_proxy.upstream")

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
        b"content-type",
        b"retry-after",
        b"retry-after-ms",
        b"request-id",
        b"cf-ray",
        b"location",
    }
)
RELAYED_RESPONSE_PREFIXES = (b"x-ratelimit-", b"ratelimit", b"anthropic-ratelimit-", b"x-xai-")

# Streams must not be compressed by anyone on the way: each event has to reach the
# caller as soon as it exists, and errors are injected at event boundaries.
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)

JsonHook = Callable[[bytes], bytes]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # Read ASGI messages directly: Starlette's request.stream() is an async generator, and
    # registering one per request was a tenth of the proxy's CPU time.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The caller hung up while sending the request body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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


def relayed_headers(raw_headers: RawHeaders) -> RawHeaders:
    """The upstream response headers the caller gets back, names in lower case for ASGI.

    X-Request-ID is the proxy's own (it names the request in the proxy's logs), so the
    upstream's comes back as X-Upstream-Request-ID.
    """
    relayed = []
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered == b"x-request-id":
            relayed.append((b"x-upstream-request-id", value))
        elif lowered in RELAYED_RESPONSE_HEADERS or lowered.startswith(RELAYED_RESPONSE_PREFIXES):
            relayed.append((lowered, value))
    return relayed


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


class Upstream:
    """The shared connection pool of one worker and the one way to forward a request through it."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.base_url = settings.upstream_base_url()
        self.preset = PRESETS[settings.xai_upstream]
        self.models = ModelNames(
            self.preset.model_prefix, parse_aliases(settings.xai_model_aliases)
        )
        self.preset_headers = dict(self.preset.extra_headers)
        # The gateway's token is for Cloudflare only: never hand it to another upstream.
        if settings.cloudflare_aig_token is not None and self.preset.name == "cloudflare":
            token = settings.cloudflare_aig_token.get_secret_value()
            self.preset_headers["cf-aig-authorization"] = f"Bearer {token}"
        timeouts = Timeouts(
            connect=settings.xai_connect_timeout,
            read=settings.xai_read_timeout,
            pool=settings.xai_connect_timeout,
        )
        self.connector: Connector = (
            Http1Connector(settings.xai_pool_size, timeouts)
            if transport is None
            else HttpxConnector(transport, timeouts)
        )
        self.retries = RetryPolicy(settings)
        self.drain = Drain(settings.shutdown_grace_seconds)
        self.auth = CallerAuth(settings)

    async def aclose(self) -> None:
        await self.connector.aclose()

    async def probe(self) -> dict[str, object]:
        """Whether the upstream answers at all (any HTTP status counts), without any key."""
        report: dict[str, object] = {"name": self.preset.name, "base_url": self.base_url}
        started = perf_counter()
        try:
            async with asyncio.timeout(self.settings.xai_connect_timeout):
                response = await self.connector.send("GET", f"{self.base_url}/models", {}, None)
                await response.read()
        except (httpx.TransportError, TimeoutError) as exc:
            report.update(reachable=False, error=type(exc).__name__)
        else:
            report.update(reachable=True, status=response.status)
        report["latency_ms"] = round((perf_counter() - started) * 1000, 1)
        return report

    async def forward(
        self,
        request: Request,
        path: str,
        *,
        key: str,
        body: bytes | None = None,
        query: str | None = None,
        headers: dict[str, str] | None = None,
        flavor: Flavor = Flavor.OPENAI,
        done_markers: tuple[bytes, ...] = (),
        on_json: JsonHook | None = None,
        strip_usage: bool = False,
    ) -> Response:
        """Send one request upstream and turn the answer into the caller's response.

        `body` goes upstream byte for byte. `done_markers` are what a complete stream of
        this route ends with; a stream that ends without one gets an error event.
        `on_json` rewrites a successful JSON body (for the routes that translate).
        """
        if not self.preset.serves(path):
            raise NotOnThisUpstream(
                f"The configured upstream ({self.preset.name}) has no {path} route; "
                "use XAI_UPSTREAM=xai (or cloudflare) for it."
            )
        url = f"{self.base_url}{path}"
        if query:
            url = f"{url}?{query}"
        outgoing = upstream_headers(request, key)
        if headers:
            outgoing.update(headers)
        if self.preset_headers:
            outgoing.update(self.preset_headers)
        if body and not self.models.identity:
            body = self.models.request_body(body)
        watch = HangUpWatch(request.receive)
        record = record_of(request.scope)
        outgoing["x-request-id"] = record.request_id
        tally = Tally()
        response: Response | None = None
        try:
            with watch:
                response = await self._exchange(
                    request.method,
                    url,
                    headers=outgoing,
                    body=body,
                    flavor=flavor,
                    done_markers=done_markers,
                    on_json=on_json,
                    tally=tally,
                    record=record,
                    strip_usage=strip_usage,
                )
        except asyncio.CancelledError:
            if not watch.gone:
                raise
        except httpx.TransportError as exc:
            error = transport_failure(exc, self.settings.xai_read_timeout)
            error.headers[ATTEMPTS_HEADER] = str(tally.attempts)
            record.error_kind = "timeout" if isinstance(error, UpstreamTimeout) else "unreachable"
            raise error from None
        finally:
            record.attempts = tally.attempts
        if watch.gone:
            if isinstance(response, SseRelay):
                await response.upstream.aclose()
            log.info("caller hung up before the answer; upstream request closed: %s", path)
            # 499 is nginx's "client closed request": it only ever reaches the access log.
            return Response(status_code=499)
        assert response is not None
        return response

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        flavor: Flavor,
        done_markers: tuple[bytes, ...],
        on_json: JsonHook | None,
        tally: Tally,
        record: RequestRecord,
        strip_usage: bool,
    ) -> Response:
        started = perf_counter()
        upstream = await self.retries.send(
            self.connector, method, url, headers=headers, body=body, tally=tally
        )
        record.upstream_seconds = perf_counter() - started
        attempts = (ATTEMPTS_HEADER.encode(), str(tally.attempts).encode())
        content_type = upstream.header("content-type")
        if upstream.status < 400 and content_type.startswith("text/event-stream"):
            # Ownership of the open response passes to the relay, which closes it.
            return SseRelay(
                upstream,
                headers=[*relayed_headers(upstream.raw_headers), *STREAM_HEADERS, attempts],
                flavor=flavor,
                done_markers=done_markers,
                describe_failure=lambda exc: transport_failure(exc, self.settings.xai_read_timeout),
                keepalive=self.settings.sse_keepalive_seconds,
                drain=self.drain,
                record=record,
                strip_usage=strip_usage,
                rewrite=None if self.models.identity else self.models.answer,
            )
        content = await upstream.read()
        if upstream.status >= 400:
            error = upstream_error(upstream.status, content, content_type)
            answer = Response(
                envelope_bytes(flavor, error), error.status, media_type="application/json"
            )
            answer.raw_headers.extend(
                pair for pair in relayed_headers(upstream.raw_headers) if pair[0] != b"content-type"
            )
            answer.raw_headers.append(attempts)
            return answer
        if content_type.startswith("application/json") and content:
            try:
                record.usage = from_body(orjson.loads(content))
            except orjson.JSONDecodeError:
                # A success that cannot be read is not a success: say so instead of relaying it.
                record.error_kind = "malformed"
                raise UpstreamError(
                    502,
                    f"Upstream answered {upstream.status} with {len(content)} bytes of "
                    "malformed JSON.",
                    code="upstream_malformed_response",
                ) from None
            if not self.models.identity:
                content = self.models.answer(content)
            if on_json is not None:
                content = on_json(content)
        answer = Response(content, upstream.status)
        answer.raw_headers.extend(relayed_headers(upstream.raw_headers))
        answer.raw_headers.append(attempts)
        return answer
