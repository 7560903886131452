"""tracing.py: when it is on, what it reads out of answers, and that off costs no import."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from grok_proxy.calls.record import RequestRecord
from grok_proxy.observability.tracing import (
    STATE_KEY,
    HttpCall,
    Tracing,
    enabled,
    from_environment,
    usage_attributes,
)
from grok_proxy.serving.observers import Finished, grpc_scope

ENDPOINT = "http://127.0.0.1:4318"

LOADED = (
    "import sys; from grok_proxy.app import create_app; create_app(); "
    "print(sorted({m.split('.')[1] for m in sys.modules "
    "if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))}))"
)


def sdk_modules_after_create_app(**environ: str) -> str:
    """Which OpenTelemetry SDK packages a fresh process imported to build the app."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", LOADED],
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_off_without_an_endpoint_imports_no_sdk() -> None:
    # FastAPI itself imports the OpenTelemetry *API* when it is installed; the SDK and
    # the exporter (threads, HTTP session, protobuf) come only with an endpoint.
    assert sdk_modules_after_create_app() == "[]"
    on = sdk_modules_after_create_app(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT)
    assert on == "['exporter', 'sdk']"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_on_only_with_an_otlp_endpoint(environ: dict[str, str], on: bool) -> None:
    assert enabled(environ) is on
    if not on:
        assert from_environment("https://api.x.ai/v1", environ=environ) is None


def test_untraced_requests_add_no_headers(exported: tuple[Tracing, Any]) -> None:
    """Paths that are not API calls get no span, so nothing is added upstream."""
    tracing, _ = exported
    record = RequestRecord("r")
    assert tracing.started({"path": "/health", "method": "GET", "headers": []}, record) is None
    assert record.on_forward is None


def test_usage_counts_reasoning_as_output_and_cached_as_input() -> None:
    usage = {"prompt": 100, "completion": 20, "reasoning": 30, "cached": 60}
    assert usage_attributes(usage) == {
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.reasoning.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 60,
    }
    assert usage_attributes(None) == {}


@pytest.fixture
def exported() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = Tracing("https://api.x.ai/v1", exporter=exporter)
    yield tracing, exporter
    tracing.shutdown()


def finished(tracing: Tracing, exporter: InMemorySpanExporter) -> ReadableSpan:
    tracing.provider.force_flush()
    [span] = exporter.get_finished_spans()
    return span


def http_call(tracing: Tracing, path: str, body: bytes = b"") -> tuple[HttpCall, dict[str, Any]]:
    scope: dict[str, Any] = {"path": path, "method": "POST", "headers": [], "state": {}}
    call = tracing.http_call(scope)
    assert call is not None
    assert scope["state"][STATE_KEY] is call
    headers = dict(call.forwarding(body))
    assert headers["traceparent"].split("-")[2] == format(
        call.span.get_span_context().span_id, "016x"
    )
    return call, scope


def relay(call: HttpCall, content_type: bytes, *bodies: bytes) -> None:
    call.sent(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    for body in bodies:
        call.sent({"type": "http.response.body", "body": body, "more_body": True})
    call.sent({"type": "http.response.body", "body": b"", "more_body": False})


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)


def test_anthropic_stream_model_stop_reason_and_first_chunk(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    call, _ = http_call(tracing, "/v1/messages")
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "grok-4-0709"}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    relay(call, b"text/event-stream", b": keep-alive\n\n", sse(start), sse(delta))
    call.end(RequestRecord("r1", model="grok-4", usage={"prompt": 3, "completion": 4}), 200)
    span = finished(tracing, exporter)
    attributes = dict(span.attributes or {})
    assert span.name == "chat grok-4"
    assert attributes["gen_ai.response.model"] == "grok-4-0709"
    assert attributes["gen_ai.response.id"] == "msg_1"
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert "gen_ai.response.time_to_first_chunk" in attributes
    assert span.status.status_code.name == "UNSET"


def test_responses_stream_reports_the_completed_status(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    call, _ = http_call(tracing, "/api/v1/responses")
    created = {"type": "response.created", "response": {"object": "response", "model": "m"}}
    done = {
        "type": "response.incomplete",
        "response": {
            "object": "response",
            "model": "grok-4-0709",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
        },
    }
    relay(call, b"text/event-stream", sse(created), sse(done))
    call.end(RequestRecord("r2", model="grok-4"), 200)
    attributes = dict(finished(tracing, exporter).attributes or {})
    assert attributes["gen_ai.response.model"] == "grok-4-0709"
    assert attributes["gen_ai.response.finish_reasons"] == ("max_output_tokens",)


def test_content_only_with_the_capture_switch(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    request = orjson.dumps({"model": "grok-4", "messages": [{"role": "user", "content": "secret"}]})
    answer = orjson.dumps(
        {"model": "grok-4", "choices": [{"message": {"content": "reply"}, "finish_reason": "stop"}]}
    )
    for capture in (False, True):
        tracing.capture = capture
        call, _ = http_call(tracing, "/v1/chat/completions", request)
        relay(call, b"application/json", answer)
        call.end(RequestRecord("r3", model="grok-4"), 200)
        tracing.provider.force_flush()
        [span] = exporter.get_finished_spans()
        exporter.clear()
        attributes = dict(span.attributes or {})
        assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
        text = orjson.dumps(attributes).decode()
        assert ("secret" in text, "reply" in text) == (capture, capture)


def test_proxy_refusal_is_an_error_with_its_code(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    call, _ = http_call(tracing, "/v1/chat/completions")
    envelope = {"error": {"message": "No key.", "type": "invalid_request_error", "code": "no_key"}}
    call.sent(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    call.sent({"type": "http.response.body", "body": orjson.dumps(envelope), "more_body": False})
    call.end(RequestRecord("r4"), 401)
    span = finished(tracing, exporter)
    assert span.name == "chat"
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "HTTP 401 no_key"
    assert (span.attributes or {})["error.type"] == "401"


def test_calls_outside_the_api_are_not_traced(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, _ = exported
    assert tracing.http_call({"path": "/health", "method": "GET", "headers": []}) is None


def test_other_calls_are_named_by_method_and_route_template(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    call, _ = http_call(tracing, "/v1/files/file_abc123")
    relay(call, b"application/json", b"{}")
    call.end(RequestRecord("r5", route="/api/v1/files/{file_id}"), 200)
    span = finished(tracing, exporter)
    assert span.name == "POST /api/v1/files/{file_id}"
    assert "gen_ai.operation.name" not in (span.attributes or {})


def test_websocket_turns_refused_completed_and_left_open(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    session = tracing.session({"headers": []}, "responses", None)
    create = orjson.dumps({"type": "response.create", "model": "grok-4", "input": "hi"}).decode()
    session.from_caller(create)  # refused by the upstream
    session.from_caller(create)  # completed
    refusal = {"type": "error", "error": {"code": "model_not_found", "message": "no"}}
    session.from_upstream(orjson.dumps(refusal).decode())
    session.from_upstream('{"type": "response.created", "response": {"id": "r2"}}')
    late_error = {"type": "error", "error": {"code": "invalid_event"}}  # another event's
    session.from_upstream(orjson.dumps(late_error).decode())
    session.from_upstream('{"type": "response.output_text.delta", "delta": "x"}')
    done = {
        "type": "response.completed",
        "response": {
            "id": "r2",
            "object": "response",
            "model": "grok-4-0709",
            "status": "completed",
            "usage": {"input_tokens": 5, "output_tokens": 7},
        },
    }
    session.from_upstream(orjson.dumps(done).decode())
    session.from_caller(create)  # still open when the session ends
    session.end(status=101, model="grok-4", fingerprint="sha256:ab", close_code=1000)
    tracing.provider.force_flush()
    spans = {
        (s.name, (s.attributes or {}).get("error.type")): s for s in exporter.get_finished_spans()
    }
    assert set(spans) == {
        ("chat grok-4", "model_not_found"),
        ("chat grok-4", None),
        ("chat grok-4", "session_closed"),
        ("websocket responses", None),
    }
    completed = spans[("chat grok-4", None)].attributes or {}
    assert completed["gen_ai.response.id"] == "r2"
    assert completed["gen_ai.usage.output_tokens"] == 7
    assert "gen_ai.response.time_to_first_chunk" in completed
    session_span = spans[("websocket responses", None)]
    assert (session_span.attributes or {})["gen_ai.usage.input_tokens"] == 5
    assert (session_span.attributes or {})["grok_proxy.websocket.turns"] == 3


def test_a_huge_model_name_is_cut(exported: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported
    call, _ = http_call(tracing, "/v1/chat/completions")
    relay(call, b"application/json", orjson.dumps({"model": "m" * 100_000}))
    call.end(RequestRecord("r6", model="grok-" * 100_000), 200)
    span = finished(tracing, exporter)
    assert len(span.name) < 300
    attributes = span.attributes or {}
    assert len(str(attributes["gen_ai.request.model"])) <= 201
    assert len(str(attributes["gen_ai.response.model"])) <= 201


def test_a_websocket_session_is_traced_through_the_observer(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    # The relay reports to the same observer as HTTP: one record in, one span out.
    tracing, exporter = exported
    record = RequestRecord(
        "s1", protocol="websocket", route="responses", key_fingerprint="sha256:ab"
    )
    scope: dict[str, Any] = {"type": "websocket", "headers": []}
    listen = tracing.started(scope, record)
    assert listen is not None and record.on_forward is not None
    assert "traceparent" in dict(record.on_forward(None))  # for the upstream handshake
    create = {"type": "response.create", "model": "grok-4", "input": "hi"}
    listen({"type": "websocket.receive", "text": orjson.dumps(create).decode()})
    done = {"type": "response.completed", "response": {"usage": {"input_tokens": 2}}}
    listen({"type": "websocket.send", "text": orjson.dumps(done).decode()})
    record.close_code, record.closed_by = 1011, "upstream"
    tracing.finished(Finished(scope, "/v1/responses", record, 101, 0.0, None, 1.0))
    tracing.provider.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"websocket responses", "chat grok-4"}
    session = spans["websocket responses"].attributes or {}
    assert session["grok_proxy.websocket.close_code"] == 1011
    assert session["grok_proxy.key.fingerprint"] == "sha256:ab"
    assert session["gen_ai.usage.input_tokens"] == 2
    assert session["error.type"] == "close_1011"


def test_a_grpc_call_is_traced_through_the_observer(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    method = "/xai_api.Chat/GetCompletion"
    record = RequestRecord("g1", protocol="grpc", route=method)
    scope = grpc_scope(method, "ipv4:127.0.0.1:5", {}, ("127.0.0.1", 9))
    assert tracing.started(scope, record) is not None
    assert record.on_forward is not None and "traceparent" in dict(record.on_forward(b""))
    tracing.finished(Finished(scope, method, record, "UNAUTHENTICATED", 0.0, None, 1.0))
    span = finished(tracing, exporter)
    attributes = span.attributes or {}
    assert attributes["rpc.grpc.status_code"] == "UNAUTHENTICATED"
    assert attributes["server.port"] == 9
    assert attributes["error.type"] == "UNAUTHENTICATED"
