"""One record and one set of observers for every protocol, seen as a user sees them.

A WebSocket session and a gRPC call each show up once in /metrics, with the status the
caller got, and write one access line, as an HTTP request does. The access line is
written just after the metrics are counted (both by the same `finished`), so once a
call's line is in the log its counts are final: the tests wait for the line, never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from xai_sdk.proto.v6 import chat_pb2, chat_pb2_grpc

from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, output_of, proxy
from tests.prometheus_text import sample

TIMEOUT = 10.0
CHAT = "/xai_api.Chat/GetCompletion"


@pytest.fixture(scope="module")
def observed(sim: Simulator) -> Iterator[Proxy]:
    """A proxy of this module's own, so no other test's calls move its counts."""
    with proxy(
        sim.base_url,
        grok_proxy_grpc_port=str(free_port()),
        xai_grpc_url=f"grpc://{sim.grpc_target}",
    ) as running:
        yield running


def metrics(running: Proxy) -> str:
    return httpx.get(f"{running.url}/metrics", timeout=TIMEOUT).text


def access_lines(running: Proxy, request_id: str, timeout: float = 5.0) -> list[str]:
    """The access lines of the call with this request id, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [
            line
            for line in output_of(running.process).splitlines()
            if f"[{request_id}]" in line and "grok_proxy.access" in line
        ]
        if lines:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def ws_url(running: Proxy) -> str:
    return "ws" + running.url.removeprefix("http")


def test_a_websocket_session_is_counted_once_with_its_messages(observed: Proxy) -> None:
    before = metrics(observed)
    rid = f"ws-once-{time.monotonic_ns()}"
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-ID": rid}
    with connect(
        f"{ws_url(observed)}/v1/stt?sim=echo", additional_headers=headers, open_timeout=TIMEOUT
    ) as ws:
        ws.send(b"12345")
        assert ws.recv(timeout=TIMEOUT) == b"12345"
        ws.send(b"678")
        assert ws.recv(timeout=TIMEOUT) == b"678"
    [line] = access_lines(observed, rid)
    assert "WEBSOCKET /v1/stt 101" in line
    assert "up=2/8B down=2/8B close=1000 by caller" in line
    after = metrics(observed)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    labels = {"route": "stt", "status": "101", "close_code": "1000"}
    assert grew("grok_proxy_websocket_sessions_total", **labels) == 1
    assert grew("grok_proxy_websocket_messages_total", direction="to_upstream") == 2
    assert grew("grok_proxy_websocket_messages_total", direction="to_caller") == 2
    assert grew("grok_proxy_websocket_bytes_total", direction="to_upstream") == 8
    assert grew("grok_proxy_websocket_bytes_total", direction="to_caller") == 8
    assert sample(after, "grok_proxy_websocket_sessions_open") == 0
    # A session is not an HTTP request: it does not count among them.
    assert sample(after, "grok_proxy_requests_total", route="stt") == 0


def test_a_refused_websocket_session_is_counted_with_the_status_the_caller_got(
    observed: Proxy,
) -> None:
    before = metrics(observed)
    rid = f"ws-refused-{time.monotonic_ns()}"
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"{ws_url(observed)}/v1/realtime",
            additional_headers={"X-Request-ID": rid},
            open_timeout=TIMEOUT,
        )
    assert refused.value.response.status_code == 401
    [line] = access_lines(observed, rid)
    assert "WEBSOCKET /v1/realtime 401" in line
    assert "close=- by -" in line
    after = metrics(observed)
    labels = {"route": "realtime", "status": "401", "close_code": "-"}
    assert (
        sample(after, "grok_proxy_websocket_sessions_total", **labels)
        - sample(before, "grok_proxy_websocket_sessions_total", **labels)
        == 1
    )
    assert sample(after, "grok_proxy_websocket_sessions_open") == 0


def chat_call(running: Proxy, rid: str, key: str | None) -> grpc.StatusCode:
    """One GetCompletion through the relay with this request id; the status it ended with."""
    metadata = [("x-request-id", rid)]
    if key is not None:
        metadata.append(("authorization", f"Bearer {key}"))
    request = chat_pb2.GetCompletionsRequest(
        model="grok-4", messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER)]
    )
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        try:
            stub.GetCompletion(request, metadata=metadata, timeout=TIMEOUT)
        except grpc.RpcError as failed:
            code: grpc.StatusCode = failed.code()
            return code
    return grpc.StatusCode.OK


def test_a_grpc_call_is_counted_once_with_its_code_and_messages(observed: Proxy) -> None:
    before = metrics(observed)
    answered, refused = f"grpc-ok-{time.monotonic_ns()}", f"grpc-no-key-{time.monotonic_ns()}"
    assert chat_call(observed, answered, KEY) == grpc.StatusCode.OK
    assert chat_call(observed, refused, None) == grpc.StatusCode.UNAUTHENTICATED
    [line] = access_lines(observed, answered)
    assert f"gRPC {CHAT} OK" in line
    assert "in=1 out=1" in line
    [line] = access_lines(observed, refused)
    assert f"gRPC {CHAT} UNAUTHENTICATED" in line
    assert "in=0 out=0" in line
    after = metrics(observed)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("grok_proxy_grpc_calls_total", method=CHAT, code="OK") == 1
    assert grew("grok_proxy_grpc_calls_total", method=CHAT, code="UNAUTHENTICATED") == 1
    assert grew("grok_proxy_grpc_messages_total", method=CHAT, direction="in") == 1
    assert grew("grok_proxy_grpc_messages_total", method=CHAT, direction="out") == 1
    assert grew("grok_proxy_grpc_call_duration_seconds_count", method=CHAT) == 2
    assert sample(after, "grok_proxy_grpc_open_calls") == 0
