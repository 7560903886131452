"""OpenTelemetry traces (issue 23): the real proxy exports GenAI spans to a real OTLP receiver.

The proxy runs as a process with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver in this
test process, which decodes each export with opentelemetry-proto. Each call carries its own
x-request-id (an attribute of its span) and, where the test says so, a caller's
`traceparent`; the simulator's request log shows the `traceparent` the upstream received.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import openai
import orjson
import pytest
from websockets.sync.client import connect
from xai_sdk import Client
from xai_sdk.chat import user

from tests.conftest import KEY
from tests.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.processes import Proxy, Simulator, free_port, proxy

TIMEOUT = 10.0
CLIENT_KIND = 3  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_CLIENT
ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR
PROMPT = "What is the tallest mountain on Mars?"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(sim: Simulator, receiver: Receiver) -> Iterator[Proxy]:
    """The proxy with traces on: exported every 50 ms to the receiver."""
    with proxy(
        sim.base_url,
        otel_exporter_otlp_endpoint=receiver.url,
        otel_bsp_schedule_delay="50",
        otel_service_name="grok-proxy-under-test",
        otel_exporter_otlp_headers="authorization=Bearer collector-token",
        grok_proxy_grpc_port=str(free_port()),
        xai_grpc_url=f"grpc://{sim.grpc_target}",
    ) as running:
        yield running


def caller_context() -> tuple[str, str, str]:
    """A caller's own trace: (trace id, span id, traceparent header)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def span_of(receiver: Receiver, request_id: str) -> ReceivedSpan:
    """The span of the call that sent `request_id` as its x-request-id."""
    [span] = receiver.wait_for(lambda s: s.attributes.get("grok_proxy.request_id") == request_id)
    return span


def upstream_traceparent(sim: Simulator, request_id: str) -> str:
    """The traceparent the simulator received with the request carrying `request_id`."""
    seen = [r for r in sim.requests() if r["headers"].get("x-request-id") == request_id]
    assert seen, f"no upstream request with x-request-id {request_id}"
    traceparent: str = seen[-1]["headers"]["traceparent"]
    return traceparent


def assert_child_upstream(sim: Simulator, request_id: str, span: ReceivedSpan) -> None:
    """xAI's side got a traceparent naming the proxy's span: its span is the proxy's child."""
    version, trace_id, parent_id, flags = upstream_traceparent(sim, request_id).split("-")
    assert (version, trace_id, parent_id) == ("00", span.trace_id, span.span_id)
    assert int(flags, 16) & 1  # sampled


def no_secrets(span: ReceivedSpan) -> None:
    text = orjson.dumps(span.attributes).decode()
    assert KEY not in text
    assert PROMPT not in text  # no content unless the capture switch is on


def test_plain_chat_is_a_genai_span_continuing_the_callers_trace(
    traced: Proxy, sim: Simulator, receiver: Receiver
) -> None:
    trace_id, caller_span, traceparent = caller_context()
    rid = f"plain-{secrets.token_hex(4)}"
    client = openai.OpenAI(base_url=f"{traced.url}/v1", api_key=KEY, timeout=TIMEOUT)
    answer = client.chat.completions.create(
        model="grok-4",
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": traceparent, "tracestate": "vendor=1", "x-request-id": rid},
    )
    span = span_of(receiver, rid)
    assert span.name == "chat grok-4"
    assert span.kind == CLIENT_KIND
    assert (span.trace_id, span.parent_span_id) == (trace_id, caller_span)
    assert answer.usage is not None
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "x_ai"
    assert attributes["gen_ai.request.model"] == "grok-4"
    assert attributes["gen_ai.response.model"] == answer.model
    assert attributes["gen_ai.response.id"] == answer.id
    assert attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert attributes["gen_ai.response.finish_reasons"] == [answer.choices[0].finish_reason]
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["http.response.status_code"] == 200
    assert span.status_code != ERROR
    assert span.resource["service.name"] == "grok-proxy-under-test"
    no_secrets(span)
    assert_child_upstream(sim, rid, span)
    # The caller's tracestate travels on with the context, as W3C asks.
    seen = [r for r in sim.requests() if r["headers"].get("x-request-id") == rid][-1]
    assert seen["headers"]["tracestate"] == "vendor=1"
    # The collector got OTLP/HTTP protobuf with the headers from OTEL_EXPORTER_OTLP_HEADERS.
    assert {e["content-type"] for e in receiver.exports} == {"application/x-protobuf"}
    assert {e["authorization"] for e in receiver.exports} == {"Bearer collector-token"}


def test_stream_span_has_usage_finish_reason_and_time_to_first_chunk(
    traced: Proxy, sim: Simulator, receiver: Receiver
) -> None:
    rid = f"stream-{secrets.token_hex(4)}"
    client = openai.OpenAI(base_url=f"{traced.url}/v1", api_key=KEY, timeout=TIMEOUT)
    stream = client.chat.completions.create(
        model="grok-4@chunks=5",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    span = span_of(receiver, rid)
    attributes = span.attributes
    assert span.name == "chat grok-4@chunks=5"
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attributes["gen_ai.response.model"] == chunks[0].model
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < TIMEOUT
    assert span.status_code != ERROR
    no_secrets(span)
    assert_child_upstream(sim, rid, span)


def test_cut_stream_is_an_error_span(traced: Proxy, receiver: Receiver) -> None:
    rid = f"cut-{secrets.token_hex(4)}"
    client = openai.OpenAI(base_url=f"{traced.url}/v1", api_key=KEY, timeout=TIMEOUT)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="grok-4@chunks=10,cut=3",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"x-request-id": rid},
        ):
            pass
    span = span_of(receiver, rid)
    assert span.status_code == ERROR
    assert span.attributes["error.type"] == "stream_cut"


def test_callers_4xx_is_an_error_span(traced: Proxy, sim: Simulator, receiver: Receiver) -> None:
    # The proxy's own 401 (no key), and xAI's 429 relayed.
    rid = f"nokey-{secrets.token_hex(4)}"
    answer = httpx.post(
        f"{traced.url}/v1/chat/completions",
        json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": rid},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 401
    span = span_of(receiver, rid)
    assert span.status_code == ERROR
    assert span.attributes["error.type"] == "401"
    assert span.attributes["http.response.status_code"] == 401
    rid = f"limited-{secrets.token_hex(4)}"
    answer = httpx.post(
        f"{traced.url}/v1/chat/completions",
        json={"model": "grok-4@status=429", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": rid, "authorization": f"Bearer {KEY}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 429
    span = span_of(receiver, rid)
    assert (span.status_code, span.attributes["error.type"]) == (ERROR, "429")
    assert_child_upstream(sim, rid, span)


def test_caller_hanging_up_mid_stream_is_an_error_span(traced: Proxy, receiver: Receiver) -> None:
    rid = f"gone-{secrets.token_hex(4)}"
    body = {
        "model": "grok-4@chunks=50,pace=100",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-request-id": rid, "authorization": f"Bearer {KEY}"}
    url = f"{traced.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=TIMEOUT) as response:
        next(response.iter_lines())  # the first event, then the caller leaves
    span = span_of(receiver, rid)
    assert span.status_code == ERROR
    assert span.attributes["error.type"] == "caller_hung_up"


def test_websocket_session_span_with_a_child_span_per_turn(
    traced: Proxy, sim: Simulator, receiver: Receiver
) -> None:
    trace_id, caller_span, traceparent = caller_context()
    rid = f"ws-{secrets.token_hex(4)}"
    headers = {"authorization": f"Bearer {KEY}", "traceparent": traceparent, "x-request-id": rid}
    url = traced.url.replace("http://", "ws://") + "/v1/responses"
    completed: list[dict[str, Any]] = []
    with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        for text in ("Hello", "And then?"):
            ws.send(
                orjson.dumps({"type": "response.create", "model": "grok-4", "input": text}).decode()
            )
            while True:
                event = orjson.loads(ws.recv(timeout=TIMEOUT))
                if event["type"] == "response.completed":
                    completed.append(event["response"])
                    break
    [session] = receiver.wait_for(
        lambda s: s.name == "websocket responses" and s.trace_id == trace_id
    )
    assert session.parent_span_id == caller_span
    turns = receiver.wait_for(lambda s: s.parent_span_id == session.span_id, count=2)
    for turn, response in zip(turns, completed, strict=True):
        assert turn.name == "chat grok-4"
        assert turn.attributes["gen_ai.response.id"] == response["id"]
        assert turn.attributes["gen_ai.usage.input_tokens"] == response["usage"]["input_tokens"]
        assert turn.attributes["gen_ai.usage.output_tokens"] == response["usage"]["output_tokens"]
        assert turn.attributes["gen_ai.response.finish_reasons"] == ["completed"]
        assert turn.status_code != ERROR
    total = sum(r["usage"]["output_tokens"] for r in completed)
    assert session.attributes["gen_ai.usage.output_tokens"] == total
    assert session.attributes["grok_proxy.websocket.turns"] == 2
    assert session.status_code != ERROR
    handshakes = [r for r in sim.requests() if r["path"] == "/v1/responses"]
    traceparents = {r["headers"].get("traceparent", "")[:52] for r in handshakes}
    assert f"00-{trace_id}-{session.span_id}" in traceparents


def test_grpc_call_span(traced: Proxy, sim: Simulator, receiver: Receiver) -> None:
    trace_id, caller_span, traceparent = caller_context()
    rid = f"grpc-{secrets.token_hex(4)}"
    metadata = (("traceparent", traceparent), ("x-request-id", rid))
    client = Client(
        api_key=KEY,
        api_host=traced.grpc_target,
        use_insecure_channel=True,
        timeout=TIMEOUT,
        metadata=metadata,
    )
    with closing(client):
        answer = client.chat.create(model="grok-4", messages=[user(PROMPT)]).sample()
    [span] = receiver.wait_for(lambda s: s.trace_id == trace_id and s.name.startswith("chat"))
    assert span.parent_span_id == caller_span
    assert span.name == "chat grok-4"
    attributes = span.attributes
    assert attributes["rpc.method"] == "GetCompletion"
    assert attributes["rpc.grpc.status_code"] == "OK"
    assert attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    no_secrets(span)
    assert_child_upstream(sim, rid, span)


def test_shared_proxy_names_the_member_never_a_key(sim: Simulator) -> None:
    member_key, server_key = "member-key-4f1c9a2b", "xai-server-secret-8d3e6f10"
    with (
        otlp_receiver() as receiver,
        proxy(
            sim.base_url,
            otel_exporter_otlp_endpoint=receiver.url,
            otel_bsp_schedule_delay="50",
            grok_proxy_api_keys=member_key,
            xai_api_key=server_key,
        ) as shared,
    ):
        rid = f"member-{secrets.token_hex(4)}"
        answer = httpx.post(
            f"{shared.url}/v1/chat/completions",
            json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-request-id": rid, "authorization": f"Bearer {member_key}"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200
        span = span_of(receiver, rid)
    fingerprint = span.attributes["grok_proxy.key.fingerprint"]
    assert span.attributes["grok_proxy.member.id"].startswith("key-")
    assert span.attributes["grok_proxy.member.name"] == f"key {fingerprint}"
    text = orjson.dumps(span.attributes).decode()
    assert member_key not in text
    assert server_key not in text


def test_content_is_recorded_only_with_the_capture_switch(sim: Simulator) -> None:
    rid = f"capture-{secrets.token_hex(4)}"
    with (
        otlp_receiver() as receiver,
        proxy(
            sim.base_url,
            otel_exporter_otlp_endpoint=receiver.url,
            otel_bsp_schedule_delay="50",
            otel_instrumentation_genai_capture_message_content="true",
        ) as capturing,
    ):
        client = openai.OpenAI(base_url=f"{capturing.url}/v1", api_key=KEY, timeout=TIMEOUT)
        stream = client.chat.completions.create(
            model="grok-4@chunks=3",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_headers={"x-request-id": rid},
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        span = span_of(receiver, rid)
    assert PROMPT in span.attributes["gen_ai.input.messages"]
    output = orjson.loads(span.attributes["gen_ai.output.messages"])
    assert output == [{"role": "assistant", "content": text}]
    assert KEY not in orjson.dumps(span.attributes).decode()


def test_spans_still_queued_at_shutdown_are_exported(sim: Simulator) -> None:
    """Workers exit without atexit handlers: the lifespan's end sends the last batch."""
    rid = f"last-{secrets.token_hex(4)}"
    with otlp_receiver() as receiver:
        # Batches every 10 minutes: only the shutdown can send this span.
        with proxy(
            sim.base_url,
            2,
            otel_exporter_otlp_endpoint=receiver.url,
            otel_bsp_schedule_delay="600000",
        ) as running:
            answer = httpx.post(
                f"{running.url}/v1/chat/completions",
                json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-request-id": rid, "authorization": f"Bearer {KEY}"},
                timeout=TIMEOUT,
            )
            assert answer.status_code == 200
            assert receiver.spans == []
        span_of(receiver, rid)


def test_without_an_endpoint_nothing_goes_upstream_or_anywhere(live: Proxy, sim: Simulator) -> None:
    """The untraced proxy (no OTEL_* set) neither forwards nor invents a traceparent."""
    rid = f"off-{secrets.token_hex(4)}"
    _, _, traceparent = caller_context()
    answer = httpx.post(
        f"{live.url}/v1/chat/completions",
        json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": rid, "authorization": f"Bearer {KEY}", "traceparent": traceparent},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200
    seen = [r for r in sim.requests() if r["headers"].get("x-request-id") == rid]
    assert "traceparent" not in seen[-1]["headers"]
