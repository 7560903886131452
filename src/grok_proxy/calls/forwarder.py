"""The forwarding core: one path that every HTTP route uses to reach the upstream API.

It knows calls, not web frameworks. A call travels: the HTTP adapter (routes/) has
authenticated the caller and chosen the body (bytes it validated, or the caller's stream)
and built a `Call` -> allow-listed headers and the upstream key -> the
client, retried where that is safe -> the upstream status checked first -> a JSON answer
read (bounded) or a body streamed through, or an SSE stream relayed event by event. Every
wait on the upstream is watched for the caller hanging up, so an abandoned request is
closed upstream at once and nobody pays for tokens that no one reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableSet
from dataclasses import dataclass
from functools import partial
from time import perf_counter

import orjson

from grok_proxy.calls.asgi import Receive
from grok_proxy.calls.auth import Caller, CallerAuth
from grok_proxy.calls.bodies import StreamedBody, elsewhere, is_large
from grok_proxy.calls.client import HttpClient
from grok_proxy.calls.errors import (
    NotOnThisUpstream,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
    envelope_bytes,
    upstream_error,
)
from grok_proxy.calls.presets import ModelNames
from grok_proxy.calls.record import RequestRecord
from grok_proxy.calls.redact import redact_header
from grok_proxy.calls.relay import BodyRelay, Endable, RelayConfig, SseRelay, StreamHooks
from grok_proxy.calls.reply import Answer, Reply
from grok_proxy.calls.retry import (
    ATTEMPTS_HEADER,
    CLIENT_RETRIES_HEADER,
    MAX_RETRIES_HEADER,
    RetryPolicy,
    Tally,
)
from grok_proxy.calls.route import JsonHook, Route
from grok_proxy.calls.transport import (
    Body,
    BodyTooLarge,
    ConnectTimedOut,
    NothingSent,
    PoolTimedOut,
    ReadTimedOut,
    UpstreamFailure,
    UpstreamResponse,
    WriteTimedOut,
)
from grok_proxy.calls.upstream import upstream_of
from grok_proxy.calls.usage import Usage, from_body
from grok_proxy.calls.watch import HangUpWatch
from grok_proxy.config import Settings

log = logging.getLogger("grok_proxy.forwarder")

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

# Response headers worth handing back: ids for support tickets, rate-limit state, back-off,
# and how the body is encoded (it is relayed as sent, compressed or not).
RELAYED_RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"content-disposition",
        b"retry-after",
        b"retry-after-ms",
        b"request-id",
        b"cf-ray",
        b"location",
    }
)
# What describes an upstream body, not a status: left out when the proxy writes the body.
BODY_HEADERS = frozenset({b"content-type", b"content-encoding", b"content-disposition"})
RELAYED_RESPONSE_PREFIXES = (b"x-ratelimit-", b"ratelimit", b"anthropic-ratelimit-", b"x-xai-")

# Streams must not be compressed or buffered by anyone on the way: each event has to
# reach the caller as soon as it exists, and errors are injected at event boundaries.
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)

# An upstream error body is read to build the envelope; past this it is not worth reading.
ERROR_BODY_LIMIT = 1024 * 1024

# The caller's headers that set how the proxy retries (retry.RetryPolicy.budget).
RETRY_HEADERS = frozenset({CLIENT_RETRIES_HEADER.encode(), MAX_RETRIES_HEADER.encode()})


@dataclass(slots=True)
class Call:
    """One call as the forwarding core sees it, whichever protocol adapter built it."""

    method: str
    # Path (and query) below the upstream base URL, still percent-encoded as received.
    target: str
    caller: Caller
    # How errors, streams and answers of this route are handled.
    route: Route
    record: RequestRecord
    # The caller's request headers as received: the allow-listed ones go upstream.
    caller_headers: list[tuple[bytes, bytes]]
    body: Body
    # Headers the route sets itself (e.g. the content type of a body it validated).
    headers: dict[str, str]
    # The route asked upstream for the usage chunk; the relay removes it again.
    strip_usage: bool = False
    # Rewrites a successful JSON answer (translated routes).
    on_json: JsonHook | None = None
    # The caller's own stream, when `body` is one: failures on its side are reported.
    streamed: StreamedBody | None = None


def relayed_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream response headers the caller gets back, names in lower case for ASGI.

    X-Request-ID is the proxy's own (it names the request in the proxy's logs), so the
    upstream's comes back as X-Upstream-Request-ID.
    """
    relayed = []
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered == b"x-request-id":
            relayed.append((b"x-upstream-request-id", redact_header(value)))
        elif lowered in RELAYED_RESPONSE_HEADERS or lowered.startswith(RELAYED_RESPONSE_PREFIXES):
            relayed.append((lowered, redact_header(value)))
    return relayed


class Forwarder:
    """The upstream client of one worker, and the one way to forward a request through it."""

    def __init__(
        self,
        settings: Settings,
        streams: MutableSet[Endable],
        stream_hooks: StreamHooks | None = None,
    ) -> None:
        """`streams`: where relays register while open, for the worker's shutdown to end."""
        self.settings = settings
        # Base URL, preset headers, trust and proxy: the one upstream target (upstream.py).
        self.upstream = upstream_of(settings)
        self.base_url = self.upstream.base_url
        self.preset = self.upstream.preset
        self.models = ModelNames(self.preset.model_prefix, settings.upstream.model_aliases)
        self.client = HttpClient(settings, self.upstream)
        self.auth = CallerAuth(settings)
        self.retries = RetryPolicy(settings)
        self.relay = RelayConfig(
            keepalive=settings.calls.sse_keepalive_seconds,
            read_timeout=settings.upstream.read_timeout,
            max_event=settings.limits.max_sse_event_bytes,
            streams=streams,
            rewrite=None if self.models.identity else self.models.answer,
            describe=self.describe,
            stream_hooks=stream_hooks or StreamHooks(),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def describe(self, failure: UpstreamFailure) -> ProxyError:
        """A failure to reach or read the upstream as the caller's error: 502 or 504."""
        settings = self.settings
        if isinstance(failure, ReadTimedOut):
            return UpstreamTimeout(
                f"The upstream API sent nothing for {settings.upstream.read_timeout:g} seconds."
            )
        if isinstance(failure, ConnectTimedOut):
            return UpstreamTimeout("The upstream API did not accept a connection in time.")
        if isinstance(failure, PoolTimedOut):
            return UpstreamTimeout(f"The proxy has no free upstream connection: {failure.message}.")
        if isinstance(failure, WriteTimedOut):
            return UpstreamTimeout(
                f"The upstream API took none of the request body for "
                f"{settings.upstream.write_timeout:g} seconds."
            )
        if isinstance(failure, NothingSent):
            return UpstreamUnreachable(f"Could not reach the upstream API: {failure.message}.")
        return UpstreamUnreachable(f"The upstream connection was lost: {failure.message}.")

    async def probe(self) -> dict[str, object]:
        """Whether the upstream answers at all (any HTTP status counts), without any key."""
        report: dict[str, object] = {"name": self.preset.name, "base_url": self.base_url}
        started = perf_counter()
        try:
            async with asyncio.timeout(self.settings.upstream.connect_timeout):
                answer = await self.client.send("GET", f"{self.base_url}/models", [], None)
                await answer.read(ERROR_BODY_LIMIT)
        except (UpstreamFailure, BodyTooLarge, TimeoutError) as exc:
            report.update(reachable=False, error=type(exc).__name__)
        else:
            report.update(reachable=True, status=answer.status)
        report["latency_ms"] = round((perf_counter() - started) * 1000, 1)
        return report

    def headers_for(self, call: Call, body: Body) -> list[tuple[str, str]]:
        """Allow-listed caller headers (every value of repeated ones) and the upstream key."""
        # From the raw header list: only the few forwarded ones are decoded.
        headers = []
        for raw_name, raw_value in call.caller_headers:
            name = raw_name.decode("latin-1")
            if (
                name in FORWARDED_REQUEST_HEADERS or name.startswith(FORWARDED_REQUEST_PREFIXES)
            ) and name not in call.headers:
                headers.append((name, raw_value.decode("latin-1")))
        headers.extend(call.headers.items())
        headers.extend(self.upstream.headers(call.caller.upstream_key))
        headers.append(("accept-encoding", "identity"))
        headers.append(("x-request-id", call.record.request_id))
        if call.record.on_forward is not None:  # a tracer's traceparent, for one
            headers.extend(call.record.on_forward(body))
        return headers

    async def forward(self, call: Call, receive: Receive) -> Answer:
        """Send one call upstream and turn the answer into the caller's.

        `receive` is the caller's side of the connection: a hang-up there closes the
        upstream request at once.
        """
        path = call.target.split("?", 1)[0]
        if not self.preset.serves(path):
            raise NotOnThisUpstream(
                f"The configured upstream ({self.preset.name}) has no {path} route; "
                "use XAI_UPSTREAM=xai (or cloudflare) for it."
            )
        body = call.body
        if isinstance(body, bytes) and body and not self.models.identity:
            if is_large(body):  # parsed in a parser process: other callers are not held up
                body = await elsewhere(body, self.models.request_body)
            else:
                body = self.models.request_body(body)
        headers = self.headers_for(call, body)
        url = f"{self.base_url}{call.target}"
        streamed = call.streamed
        watch = HangUpWatch(receive, body_done=streamed.done if streamed else None)
        record = call.record
        tally = Tally()
        response: Answer | None = None
        try:
            with watch:
                response = await self._exchange(call, url, headers, body, tally)
        except asyncio.CancelledError:
            if not watch.gone:
                raise
        except UpstreamFailure as exc:
            if streamed is not None and streamed.failure is not None:
                raise streamed.failure from None  # the caller's side failed, not upstream
            error = self.describe(exc)
            error.headers[ATTEMPTS_HEADER] = str(tally.attempts)
            record.error_kind = (
                "unreachable" if isinstance(error, UpstreamUnreachable) else "timeout"
            )
            raise error from None
        finally:
            record.attempts = tally.attempts
        if watch.gone:
            if isinstance(response, SseRelay | BodyRelay):
                await response.answer.aclose()
            log.info("caller hung up before the answer; upstream request closed: %s", path)
            # 499 is nginx's "client closed request": it only ever reaches the access log.
            return Reply(b"", 499)
        assert response is not None
        return response

    async def _exchange(
        self,
        call: Call,
        url: str,
        headers: list[tuple[str, str]],
        body: Body,
        tally: Tally,
    ) -> Answer:
        started = perf_counter()
        record = call.record
        deadline = self.settings.upstream.total_timeout
        try:
            async with asyncio.timeout(deadline or None) as total:
                answer = await self.retries.send(
                    self.client,
                    call.method,
                    url,
                    headers=headers,
                    body=body,
                    tally=tally,
                    budget=self.retries.budget(_retry_headers(call.caller_headers)),
                )
                record.upstream_seconds = perf_counter() - started
                attempts = (ATTEMPTS_HEADER.encode(), str(tally.attempts).encode())
                content_type = answer.header("content-type")
                if answer.status < 400 and content_type.startswith("text/event-stream"):
                    total.reschedule(None)  # streams have no total deadline
                    return SseRelay(
                        answer,
                        [*relayed_headers(answer.raw_headers), *STREAM_HEADERS, attempts],
                        call.route,
                        self.relay,
                        record,
                        strip_usage=call.strip_usage,
                    )
                if answer.status >= 400:
                    return await self._error_answer(answer, call, attempts)
                if not self._reads(call.route, answer):
                    total.reschedule(None)  # bounded by the read timeout while it flows
                    return BodyRelay(
                        answer,
                        [*relayed_headers(answer.raw_headers), *_length(answer), attempts],
                        record,
                    )
                return await self._json_answer(answer, call, attempts)
        except TimeoutError:
            record.error_kind = "timeout"
            raise UpstreamTimeout(
                f"The upstream API gave no complete answer within {deadline:g} seconds "
                "(setting XAI_TOTAL_TIMEOUT)."
            ) from None

    def _reads(self, route: Route, answer: UpstreamResponse) -> bool:
        if not answer.header("content-type").startswith("application/json"):
            return False
        if answer.header("content-encoding") not in ("", "identity"):
            return False  # compressed although identity was asked for: relayed as sent
        # Model names must come back in the caller's form, so a preset reads JSON answers.
        return route.reads_answer or not self.models.identity

    async def _error_answer(
        self,
        answer: UpstreamResponse,
        call: Call,
        attempts: tuple[bytes, bytes],
    ) -> Answer:
        content_type = answer.header("content-type")
        try:
            content = await answer.read(ERROR_BODY_LIMIT)
        except BodyTooLarge:
            content = b""
        # Secrets an upstream echoes (the server's key, above all) never reach the caller.
        error = upstream_error(
            answer.status, content, content_type, caller_key=call.caller.upstream_key
        )
        # The body is the proxy's own envelope, plain JSON: the upstream body's headers
        # (its type, and an encoding it used although identity was asked for) do not apply.
        headers = [
            pair for pair in relayed_headers(answer.raw_headers) if pair[0] not in BODY_HEADERS
        ]
        headers.append(attempts)
        return Reply(envelope_bytes(call.route.flavor, error), error.status, headers, json=True)

    async def _json_answer(
        self,
        answer: UpstreamResponse,
        call: Call,
        attempts: tuple[bytes, bytes],
    ) -> Answer:
        record = call.record
        limit = self.settings.limits.max_response_bytes
        try:
            content = await answer.read(limit)
        except BodyTooLarge:
            record.error_kind = "too_large"
            raise UpstreamError(
                502,
                f"The upstream answer is larger than {limit} bytes (setting MAX_RESPONSE_BYTES).",
                code="upstream_response_too_large",
            ) from None
        if content:
            models = None if self.models.identity else self.models
            if is_large(content):
                # Read (and rewritten) in a parser process: other callers are not held up.
                readable, record.usage = await elsewhere(content, _usage_of_answer)
                if readable and (models is not None or call.on_json is not None):
                    content = await elsewhere(content, partial(_relayed, models, call.on_json))
            else:
                readable, record.usage = _usage_of_answer(content)
                if readable:
                    content = _relayed(models, call.on_json, content)
            if not readable:
                # A success that cannot be read is not a success: say so instead of relaying it.
                record.error_kind = "malformed"
                raise UpstreamError(
                    502,
                    f"Upstream answered {answer.status} with {len(content)} bytes of "
                    "malformed JSON.",
                    code="upstream_malformed_response",
                )
        headers = relayed_headers(answer.raw_headers)
        headers.append(attempts)
        return Reply(content, answer.status, headers)


def _usage_of_answer(content: bytes) -> tuple[bool, Usage | None]:
    """Whether a JSON answer is readable, and the usage it reports."""
    try:
        return True, from_body(orjson.loads(content))
    except orjson.JSONDecodeError:
        return False, None


def _relayed(models: ModelNames | None, on_json: JsonHook | None, content: bytes) -> bytes:
    """A JSON answer as the caller gets it: model names in its form, then the route's hook."""
    if models is not None:
        content = models.answer(content)
    if on_json is not None:
        content = on_json(content)
    return content


def _retry_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The caller's retry headers, decoded (most requests have none)."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in raw
        if name in RETRY_HEADERS
    }


def _length(answer: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    """The upstream's Content-Length, so the caller can tell a complete body from a cut one."""
    length = answer.header("content-length")
    return [(b"content-length", length.encode())] if length.isdigit() else []
