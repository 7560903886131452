"""OpenTelemetry traces of relayed calls, named and attributed per the GenAI conventions.

Off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): `from_environment` then returns None, each hook on
the call path is skipped on one `is None`, and the OpenTelemetry SDK is never imported.
When on, the official SDK reads every other standard variable itself (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`(`_ARG`), `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_BSP_*`, ...), and spans leave in batches over OTLP/HTTP (protobuf) from the SDK's
own thread, off the request path.

One span per call: an HTTP request under /v1 (`HttpCall`), a WebSocket session with a
child span per `response.create` turn (`SessionTrace`), a gRPC call (`GrpcTrace`), each
started and ended by `Tracing` as the observer of every call (serving/observers.py). Each
continues the caller's W3C `traceparent`/`tracestate` and hands its own `traceparent` to
the upstream, so xAI's span is a child of the proxy's. The facts come from what the proxy
already knows (the request record, the bytes it relays); prompts and answers are recorded
only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, keys never.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.types import Message, Scope

from grok_proxy.calls.usage import Usage, from_event, from_grpc

if TYPE_CHECKING:  # only ever imported when tracing is on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from grok_proxy.calls.record import RequestRecord
    from grok_proxy.serving.observers import Finished

log = logging.getLogger("grok_proxy.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SERVICE_NAME = "grok-proxy"
# Where an HTTP call keeps its trace in the ASGI scope's state (shared by inner scopes).
STATE_KEY = "trace"
API_PREFIXES = ("/v1/", "/api/v1/")
# Where teams.activity.mark_member names the request's member (shared proxies).
MEMBER_STATE = "team_member"

# gen_ai.provider.name's registered value for xAI, and the older gen_ai.system's.
PROVIDER = "x_ai"
SYSTEM = "xai"
# GenAI operation of each route below /v1 (routes not listed get plain HTTP spans).
OPERATIONS = {
    "chat/completions": "chat",
    "responses": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "images/generations": "generate_content",
    "images/edits": "generate_content",
    "realtime": "chat",
}
# gRPC methods whose request is a chat request, and the answer message type of each that
# is read (the others' answers say nothing about tokens: deferred results come later).
CHAT_REQUESTS = frozenset(
    {
        "/xai_api.Chat/GetCompletion",
        "/xai_api.Chat/GetCompletionChunk",
        "/xai_api.Chat/StartDeferredCompletion",
    }
)
CHAT_ANSWERS = {
    "/xai_api.Chat/GetCompletion": "GetChatCompletionResponse",
    "/xai_api.Chat/GetCompletionChunk": "GetChatCompletionChunk",
}
GRPC_OPERATIONS = {
    "/xai_api.Chat/GetCompletion": "chat",
    "/xai_api.Chat/GetCompletionChunk": "chat",
    "/xai_api.Chat/StartDeferredCompletion": "chat",
    "/xai_api.Embedder/Embed": "embeddings",
    "/xai_api.Image/GenerateImage": "generate_content",
}

# A JSON answer is read for its model and finish reasons up to this size.
MAX_READ_BODY = 4 * 1024 * 1024
# Captured answer text of a stream (only with content capture on).
MAX_CAPTURED_TEXT = 64 * 1024
MAX_FINISH_REASONS = 16
# Longest model name, id or error code recorded (as the access log's MAX_LOGGED_MODEL).
MAX_NAME = 200
# Cheap looks at stream events before any parse.
FINISH = re.compile(rb'"(?:finish_reason|stop_reason)"\s*:\s*"([^"\\]{1,64})"')
RESPONSE_ENDS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')
WS_ENDS = ('"response.done"', '"response.completed"', '"response.incomplete"', '"response.failed"')
WS_END_TYPES = frozenset(mark.strip('"') for mark in WS_ENDS)
WS_CREATE = '"response.create"'
WS_CREATED = '"response.created"'
# Close codes that end a WebSocket session normally (or by the caller's leaving).
NORMAL_CLOSES = frozenset({1000, 1001, 1005})


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, and the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def from_environment(
    upstream_url: str, team: Any = None, environ: Mapping[str, str] | None = None
) -> Tracing | None:
    """The proxy's tracing, or None (nothing imported) when no OTLP endpoint is configured."""
    environ = os.environ if environ is None else environ
    if not enabled(environ):
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "http/protobuf").strip()
        if protocol != "http/protobuf":
            log.warning("%s=%s: grok-proxy exports over http/protobuf only", name, protocol)
    return Tracing(upstream_url, team, capture=_true(environ.get(CAPTURE_VARIABLE)))


class Tracing:
    """The tracer provider of one worker and the spans it starts."""

    def __init__(
        self,
        upstream_url: str,
        team: Any = None,
        *,
        capture: bool = False,
        exporter: SpanExporter | None = None,
    ) -> None:
        """`exporter`: where spans go (OTLP/HTTP as the environment says, unless given)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation import set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from grok_proxy import __version__

        resource = Resource.create({})  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        resource = resource.merge(Resource({"service.version": __version__}))
        # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); the exporter reads the endpoint,
        # headers, timeout and compression; the batch processor OTEL_BSP_*.
        self.provider: TracerProvider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
        self.tracer: Tracer = self.provider.get_tracer("grok_proxy", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self.in_context = set_span_in_context
        self.client_kind = SpanKind.CLIENT
        self.capture = capture
        self.team = team
        parts = urlsplit(upstream_url)
        self.server_address = parts.hostname or ""
        self.server_port = parts.port or (443 if parts.scheme in ("https", "wss", "grpcs") else 80)

    def shutdown(self) -> None:
        """Export what is still queued (also done at exit by the SDK)."""
        self.provider.shutdown()

    # the observer of every call (observers.Observer): HTTP, WebSocket and gRPC
    def started(self, scope: Scope, record: RequestRecord) -> Callable[[Message], None] | None:
        """Start the call's span; it sees the call's messages as they pass."""
        protocol = record.protocol
        call: HttpCall | SessionTrace | GrpcTrace | None
        if protocol == "websocket":
            call = self.session(scope, record.route or "other", record.model)
        elif protocol == "grpc":
            call = self.grpc_call(scope["path"], scope["metadata"], scope["upstream"])
        else:
            call = self.http_call(scope)
            if call is None:
                return None
        scope.setdefault("state", {})[STATE_KEY] = call
        record.on_forward = call.forwarding
        return call.sent

    def finished(self, request: Finished) -> None:
        """End the call's span with what its record says."""
        call = request.scope.get("state", {}).get(STATE_KEY)
        record, status = request.record, request.status
        if isinstance(call, HttpCall):
            assert isinstance(status, int)
            call.end(record, status)
        elif isinstance(call, SessionTrace):
            assert isinstance(status, int)
            call.end(
                status=status,
                model=record.model,
                fingerprint=record.key_fingerprint,
                member_id=record.member_id,
                close_code=record.close_code,
                closed_by=record.closed_by,
            )
        elif isinstance(call, GrpcTrace):
            call.end(str(status), record.key_fingerprint, record.member_id)

    # starting spans
    def http_call(self, scope: Scope) -> HttpCall | None:
        """The trace of one HTTP request (None for paths that are not API calls)."""
        path: str = scope["path"]
        if not path.startswith(API_PREFIXES):
            return None
        route = path.removeprefix("/api").removeprefix("/v1/")
        call = HttpCall(self, scope, route)
        scope.setdefault("state", {})[STATE_KEY] = call
        return call

    def session(self, scope: Scope, route: str, model: str | None) -> SessionTrace:
        """The trace of one WebSocket session on `route` (realtime, responses, tts, stt)."""
        return SessionTrace(self, scope, route, model)

    def grpc_call(
        self, method: str, metadata: Mapping[str, str | bytes], server: tuple[str, int]
    ) -> GrpcTrace:
        """The trace of one gRPC call of `method` (`/package.Service/Method`) to `server`."""
        return GrpcTrace(self, method, metadata, server)

    def start(
        self,
        name: str,
        carrier: Mapping[str, str],
        attributes: dict[str, Any],
        parent: Any = None,
        server: tuple[str, int] | None = None,
    ) -> Span:
        """A client span continuing the caller's trace (`carrier`) or a child of `parent`."""
        context = self.propagator.extract(carrier) if parent is None else self.in_context(parent)
        address, port = server or (self.server_address, self.server_port)
        attributes.update(
            {
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.system": SYSTEM,
                "server.address": address,
                "server.port": port,
            }
        )
        return self.tracer.start_span(
            name, context=context, kind=self.client_kind, attributes=attributes
        )

    def member_name(self, member_id: str) -> str | None:
        """A team member's name (shared proxies): from the worker's directory, or one of
        GROK_PROXY_API_KEYS (named by its key's fingerprint)."""
        directory = getattr(self.team, "directory", None)
        member = getattr(directory, "members", {}).get(member_id)
        if member is None:
            settings_members = getattr(self.team, "settings_keys", {}).values()
            member = next((m for m in settings_members if m.id == member_id), None)
        name = getattr(member, "name", None)
        return name if isinstance(name, str) else None


class _Traced:
    """What every traced call shares: its span, propagation and the common attributes."""

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span
        self.recording = span.is_recording()
        self.started = perf_counter()

    def upstream_headers(self) -> list[tuple[str, str]]:
        """`traceparent` (and `tracestate`) naming this call's span as the upstream's parent."""
        carrier: dict[str, str] = {}
        self.tracing.propagator.inject(carrier, self.tracing.in_context(self.span))
        return list(carrier.items())

    def caller(self, fingerprint: str | None, member_id: str | None) -> dict[str, Any]:
        """Who called: the key's log fingerprint (never the key) and the team member."""
        found: dict[str, Any] = {}
        if fingerprint:
            found["grok_proxy.key.fingerprint"] = fingerprint
        if member_id:
            found["grok_proxy.member.id"] = member_id
            name = self.tracing.member_name(member_id)
            if name:
                found["grok_proxy.member.name"] = name
        return found

    def fail(self, kind: str, description: str | None = None) -> None:
        """Mark the call failed: `error.type` and the span status ERROR."""
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("error.type", kind)
        self.span.set_status(Status(StatusCode.ERROR, description or kind))


def usage_attributes(usage: Usage | None) -> dict[str, int]:
    """Token counts as GenAI attributes; output tokens include reasoning, as xAI bills them."""
    if not usage:
        return {}
    reasoning = usage.get("reasoning", 0)
    found = {
        "gen_ai.usage.input_tokens": usage.get("prompt", 0),
        "gen_ai.usage.output_tokens": usage.get("completion", 0) + reasoning,
    }
    if reasoning:
        found["gen_ai.usage.reasoning.output_tokens"] = reasoning
    if usage.get("cached"):
        found["gen_ai.usage.cache_read.input_tokens"] = usage["cached"]
    return found


def span_name(operation: str | None, model: str | None, fallback: str) -> str:
    """`{operation} {model}` as the GenAI conventions name spans; `fallback` for other calls."""
    if operation is None:
        return fallback
    return f"{operation} {model}" if model else operation


class HttpCall(_Traced):
    """One HTTP request: started by the access middleware, fed what it sends, ended there."""

    def __init__(self, tracing: Tracing, scope: Scope, route: str) -> None:
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        self.operation = OPERATIONS.get(route)
        self.method: str = scope["method"]
        attributes: dict[str, Any] = {"http.request.method": self.method}
        if self.operation is not None:
            attributes["gen_ai.operation.name"] = self.operation
        # Other calls are named as HTTP spans: the method and, once matched, the route's
        # template (raw paths hold object ids: too many distinct names).
        name = span_name(self.operation, None, self.method)
        super().__init__(tracing, tracing.start(name, carrier, attributes))
        self.state: dict[str, Any] = scope["state"]
        self.status = 0
        self.complete = False
        self.stream = False
        self.json = False
        self.body = bytearray()
        self.first_chunk: float | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.error_code: str | None = None
        self.first_event_read = False
        self.answer_text: list[str] = []

    def forwarding(self, body: object) -> list[tuple[str, str]]:
        """Headers that carry this call's trace upstream; the body is kept when captured."""
        if self.tracing.capture and isinstance(body, bytes):
            self.capture_request(body)
        return self.upstream_headers()

    def sent(self, message: Message) -> None:
        """Look at one ASGI message on its way to the caller."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name == b"content-type":
                    self.stream = value.startswith(b"text/event-stream")
                    self.json = value.startswith(b"application/json")
            return
        if message["type"] != "http.response.body":
            return
        if not message.get("more_body", False):
            self.complete = True
        body: bytes = message.get("body", b"")
        if not body or not self.recording:
            return
        if self.stream:
            if body[:1] != b":":  # a keep-alive comment is not an answer
                self.stream_chunk(body)
        elif self.json and len(self.body) + len(body) <= MAX_READ_BODY:
            self.body += body

    def stream_chunk(self, chunk: bytes) -> None:
        """Model, finish reasons and time to first chunk out of whole events of a stream."""
        if self.first_chunk is None:
            self.first_chunk = perf_counter()
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not self.first_event_read or any(mark in data for mark in RESPONSE_ENDS):
                self.first_event_read = True
                self.read_answer(_parsed(data), whole=False)
            elif b"_reason" in data and len(self.finish_reasons) < MAX_FINISH_REASONS:
                self.finish_reasons.extend(m.decode() for m in FINISH.findall(data))
            if self.tracing.capture:
                self.capture_delta(data)

    def read_answer(self, data: Any, *, whole: bool) -> None:
        """The model, id, finish reasons (and error code) of an answer or a stream's event."""
        if not isinstance(data, dict):
            return
        for holder in ("response", "message"):  # Responses events, Anthropic message_start
            if isinstance(data.get(holder), dict):
                data = data[holder]
        model = data.get("model")
        if isinstance(model, str):
            self.response_model = short(model)
        if isinstance(data.get("id"), str) and self.response_id is None:
            self.response_id = short(data["id"])
        self.finish_reasons.extend(_finish_reasons(data))
        error = data.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            self.error_code = short(code) if isinstance(code, str) else None
        if whole and self.tracing.capture:
            output = _output_of(data)
            if output is not None:
                self.span.set_attribute("gen_ai.output.messages", _text(output))

    def capture_request(self, body: bytes) -> None:
        """The prompt as the provider's own JSON (content capture only)."""
        data = _parsed(body)
        if not isinstance(data, dict) or not self.recording:
            return
        messages = data.get("messages", data.get("input", data.get("prompt")))
        if messages is not None:
            self.span.set_attribute("gen_ai.input.messages", _text(messages))
        system = data.get("system", data.get("instructions"))
        if system is not None:
            self.span.set_attribute("gen_ai.system_instructions", _text(system))

    def capture_delta(self, data: bytes) -> None:
        """Text of one stream event, gathered for `gen_ai.output.messages` (content capture)."""
        if sum(map(len, self.answer_text)) >= MAX_CAPTURED_TEXT:
            return
        event = _parsed(data)
        if not isinstance(event, dict):
            return
        text: object = None
        if isinstance(event.get("choices"), list):
            for choice in event["choices"]:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                text = delta.get("content") if isinstance(delta, dict) else None
        elif isinstance(event.get("delta"), dict):  # Anthropic content_block_delta
            text = event["delta"].get("text")
        elif event.get("type") == "response.output_text.delta":
            text = event.get("delta")
        if isinstance(text, str):
            self.answer_text.append(text)

    def end(self, record: RequestRecord, status: int) -> None:
        """End the span with what the request record says (called once, as the request ends)."""
        member_id = self.state.get(MEMBER_STATE) or record.member_id
        span = self.span
        if self.recording:
            if self.json and self.body:
                self.read_answer(_parsed(bytes(self.body)), whole=True)
            route = f"{self.method} {record.route}" if record.route else self.method
            model = short(record.model) if record.model else None
            span.update_name(span_name(self.operation, model, route))
            attributes: dict[str, Any] = {
                "http.response.status_code": status or 499,
                "grok_proxy.request_id": record.request_id,
                **usage_attributes(record.usage),
                **self.caller(record.key_fingerprint, member_id),
            }
            if model:
                attributes["gen_ai.request.model"] = model
            if record.route:
                attributes["http.route"] = record.route
            if record.streamed:
                attributes["gen_ai.request.stream"] = True
            if self.response_model:
                attributes["gen_ai.response.model"] = self.response_model
            if self.response_id:
                attributes["gen_ai.response.id"] = self.response_id
            if self.finish_reasons:
                attributes["gen_ai.response.finish_reasons"] = self.finish_reasons
            if self.first_chunk is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = self.first_chunk - self.started
            if self.answer_text:
                output = [{"role": "assistant", "content": "".join(self.answer_text)}]
                attributes["gen_ai.output.messages"] = _text(output)
            span.set_attributes(attributes)
        failure = sys.exc_info()[1]  # called from the middleware's `finally`
        if record.error_kind:
            self.fail(record.error_kind, f"{record.error_kind} ({status or 499})")
        elif isinstance(failure, asyncio.CancelledError) or status in (0, 499):
            self.fail("caller_hung_up", "The caller hung up before the answer was complete.")
        elif failure is not None:
            self.fail(type(failure).__qualname__)
        elif status >= 400:
            code = f" {self.error_code}" if self.error_code else ""
            self.fail(str(status), f"HTTP {status}{code}")
        elif not self.complete:
            self.fail("caller_hung_up", "The caller hung up before the answer was complete.")
        span.end()


class _Turn:
    """One `response.create` of a WebSocket session, as a child span."""

    __slots__ = ("created", "first", "span", "started")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.started = perf_counter()
        self.first: float | None = None
        self.created = False  # the upstream's `response.created` for it arrived


class SessionTrace(_Traced):
    """One WebSocket session, with a child span per `response.create` turn."""

    def __init__(self, tracing: Tracing, scope: Scope, route: str, model: str | None) -> None:
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        self.operation = OPERATIONS.get(route)
        self.route = route
        self.model = short(model) if model else None
        attributes: dict[str, Any] = {"grok_proxy.websocket.route": route}
        if model:
            attributes["gen_ai.request.model"] = model
        if self.operation is not None:
            attributes["gen_ai.operation.name"] = self.operation
        super().__init__(tracing, tracing.start(f"websocket {route}", carrier, attributes))
        self.turns: deque[_Turn] = deque()
        self.usage: dict[str, int] = {}
        self.turn_count = 0

    def forwarding(self, body: object) -> list[tuple[str, str]]:
        """Headers for the upstream handshake that carry this session's trace."""
        return self.upstream_headers()

    def sent(self, message: Message) -> None:
        """One relayed message: a caller's (websocket.receive) or the upstream's (send)."""
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if message["type"] == "websocket.receive":
            self.from_caller(data)
        else:
            self.from_upstream(data)

    def from_caller(self, data: str | bytes) -> None:
        """A caller message on its way upstream: a `response.create` starts a turn."""
        if not self.recording or not isinstance(data, str) or WS_CREATE not in data:
            return
        event = _parsed(data.encode())
        if not isinstance(event, dict) or event.get("type") != "response.create":
            return
        named = event.get("model")
        inner = event.get("response")
        if named is None and isinstance(inner, dict):
            named = inner.get("model")
        model = short(named) if isinstance(named, str) and named else self.model
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        if model:
            attributes["gen_ai.request.model"] = model
            self.model = model
        if self.tracing.capture:
            messages = event.get("input", inner.get("input") if isinstance(inner, dict) else None)
            if messages is not None:
                attributes["gen_ai.input.messages"] = _text(messages)
        span = self.tracing.start(span_name("chat", model, "chat"), {}, attributes, self.span)
        self.turns.append(_Turn(span))
        self.turn_count += 1

    def from_upstream(self, data: str | bytes) -> None:
        """An upstream message on its way to the caller: first deltas and ends of turns."""
        if not self.turns or not isinstance(data, str):
            return
        turn = self.turns[0]
        if turn.first is None and '.delta"' in data:
            turn.first = perf_counter()
        if WS_CREATED in data:
            waiting = next((t for t in self.turns if not t.created), None)
            if waiting is not None:
                waiting.created = True
            return
        if not any(mark in data for mark in WS_ENDS) and '"error"' not in data:
            return
        event = _parsed(data.encode())
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "error":
            # An error before a turn's `response.created` refused that turn; later ones
            # are about other client events (a turn that fails ends with its own event).
            refused = next((t for t in self.turns if not t.created), None)
            if refused is not None:
                self.turns.remove(refused)
                error = event.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                self.end_turn(refused, event, short(str(code or "error")))
        elif kind in WS_END_TYPES:
            self.end_turn(self.turns.popleft(), event, None)

    def end_turn(self, turn: _Turn, event: dict[str, Any], error: str | None) -> None:
        """End a turn's span with what its last event says (usage, model, status)."""
        span = turn.span
        response = event.get("response")
        response = response if isinstance(response, dict) else {}
        usage = from_event(event)
        if usage:
            for kind, count in usage.items():
                self.usage[kind] = self.usage.get(kind, 0) + count
        attributes: dict[str, Any] = usage_attributes(usage)
        model = response.get("model")
        if isinstance(model, str):
            attributes["gen_ai.response.model"] = short(model)
        if isinstance(response.get("id"), str):
            attributes["gen_ai.response.id"] = response["id"]
        reasons = _finish_reasons(response)
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        if turn.first is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = turn.first - turn.started
        if self.tracing.capture and "output" in response:
            attributes["gen_ai.output.messages"] = _text(response["output"])
        span.set_attributes(attributes)
        status = response.get("status")
        if error is None and status in ("failed", "cancelled"):
            error = f"response_{status}"
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def end(
        self,
        *,
        status: int,
        model: str | None,
        fingerprint: str | None,
        member_id: str | None = None,
        close_code: int | None = None,
        closed_by: str | None = None,
    ) -> None:
        """End the session's span (and any turn that never ended) as the session is counted."""
        while self.turns:
            turn = self.turns.popleft()
            self.end_turn(turn, {}, "session_closed")
        span = self.span
        if self.recording:
            attributes: dict[str, Any] = {
                "http.response.status_code": status or 499,
                "grok_proxy.websocket.turns": self.turn_count,
                **usage_attributes(self.usage),
                **self.caller(fingerprint, member_id),
            }
            if model:
                attributes["gen_ai.request.model"] = short(model)
            if close_code is not None:
                attributes["grok_proxy.websocket.close_code"] = close_code
            if closed_by:
                attributes["grok_proxy.websocket.closed_by"] = closed_by
            span.set_attributes(attributes)
        if status != 101:
            self.fail(str(status or 499), f"WebSocket handshake answered {status or 499}")
        elif close_code is not None and close_code not in NORMAL_CLOSES:
            self.fail(f"close_{close_code}", f"closed by the {closed_by} with {close_code}")
        span.end()


class GrpcTrace(_Traced):
    """One gRPC call (xai-sdk): the request's model and the answers' usage, decoded."""

    def __init__(
        self,
        tracing: Tracing,
        method: str,
        metadata: Mapping[str, str | bytes],
        server: tuple[str, int],
    ) -> None:
        carrier = {
            name: value
            for name in ("traceparent", "tracestate")
            if isinstance(value := metadata.get(name), str)
        }
        self.method = method
        self.operation = GRPC_OPERATIONS.get(method)
        service, _, name = method.strip("/").partition("/")
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
        }
        if self.operation is not None:
            attributes["gen_ai.operation.name"] = self.operation
        name = span_name(self.operation, None, method)
        super().__init__(tracing, tracing.start(name, carrier, attributes, server=server))
        self.answer_type = CHAT_ANSWERS.get(method)
        self.model: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None
        self.first: float | None = None

    def forwarding(self, first: object) -> list[tuple[str, str]]:
        """The caller's first message, read; metadata that carries this call's trace upstream."""
        self.request(first)
        return self.upstream_headers()

    def sent(self, message: Message) -> None:
        """One answer message (`grpc.answer`) on its way to the caller."""
        self.answer(message["message"])

    def request(self, message: object) -> None:
        """The caller's first message: the requested model of a chat call."""
        if not self.recording or self.method not in CHAT_REQUESTS or not isinstance(message, bytes):
            return
        from google.protobuf.message import DecodeError
        from xai_sdk.proto.v6 import chat_pb2

        parsed = chat_pb2.GetCompletionsRequest()
        try:
            parsed.ParseFromString(message)
        except DecodeError:  # the upstream judges the request itself
            return
        self.model = short(parsed.model) if parsed.model else None
        if self.tracing.capture:
            from google.protobuf import json_format

            messages = [json_format.MessageToDict(m) for m in parsed.messages]
            self.span.set_attribute("gen_ai.input.messages", _text(messages))

    def answer(self, message: bytes) -> None:
        """One answer message: model, finish reasons and usage of chat calls."""
        if self.first is None:
            self.first = perf_counter()
        if not self.recording or self.answer_type is None:
            return
        from google.protobuf.message import DecodeError
        from xai_sdk.proto.v6 import chat_pb2

        parsed: Any = getattr(chat_pb2, self.answer_type)()
        try:
            parsed.ParseFromString(message)
        except DecodeError:  # relayed as it came; the caller's SDK judges it
            return
        if parsed.model:
            self.response_model = short(parsed.model)
        for output in parsed.outputs:
            if output.finish_reason and len(self.finish_reasons) < MAX_FINISH_REASONS:
                reason = type(output).DESCRIPTOR.fields_by_name["finish_reason"].enum_type
                name = reason.values_by_number[output.finish_reason].name
                self.finish_reasons.append(name.removeprefix("REASON_").lower())
        if parsed.HasField("usage"):
            self.usage = from_grpc(parsed.usage)

    def end(self, code: str, fingerprint: str | None, member_id: str | None = None) -> None:
        """End the call's span with its gRPC status code's name (OK, CANCELLED, ...)."""
        span = self.span
        if self.recording:
            attributes: dict[str, Any] = {
                "rpc.grpc.status_code": code,
                **usage_attributes(self.usage),
                **self.caller(fingerprint, member_id),
            }
            if self.model:
                attributes["gen_ai.request.model"] = self.model
                span.update_name(span_name(self.operation, self.model, self.method))
            if self.response_model:
                attributes["gen_ai.response.model"] = self.response_model
            if self.finish_reasons:
                attributes["gen_ai.response.finish_reasons"] = self.finish_reasons
            if self.first is not None and self.method.endswith("Chunk"):
                attributes["gen_ai.response.time_to_first_chunk"] = self.first - self.started
            span.set_attributes(attributes)
        if code != "OK":
            self.fail(code)
        span.end()


def _finish_reasons(data: dict[str, Any]) -> list[str]:
    """Finish reasons of an answer in any dialect: chat choices, Anthropic, Responses."""
    reasons: list[str] = []
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices[:MAX_FINISH_REASONS]:
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                reasons.append(reason)
    stop = data.get("stop_reason")
    if isinstance(stop, str):
        reasons.append(stop)
    status = data.get("status")
    if isinstance(status, str) and data.get("object") == "response":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        reasons.append(reason if isinstance(reason, str) else status)
    return reasons


def _output_of(data: dict[str, Any]) -> object:
    """The answer's messages in the provider's own JSON (content capture)."""
    choices = data.get("choices")
    if isinstance(choices, list):
        return [c.get("message") for c in choices if isinstance(c, dict)]
    if "output" in data:
        return data["output"]
    if data.get("type") == "message":
        return [{"role": data.get("role"), "content": data.get("content")}]
    return None


def short(text: str) -> str:
    """`text` cut to MAX_NAME characters: model names and ids come from callers and answers,
    and a span name has no length limit of its own."""
    return text if len(text) <= MAX_NAME else text[:MAX_NAME] + "…"


def _parsed(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _text(value: object) -> str:
    return orjson.dumps(value).decode()


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


__all__: Sequence[str] = ("Tracing", "enabled", "from_environment")
