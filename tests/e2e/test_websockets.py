"""xAI's WebSocket APIs through the real proxy, in front of the real simulator.

Clients are the `websockets` package (sync client), the OpenAI SDK's realtime client and a
headless Chromium; the simulator reports what reached it through /_sim/websockets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from grok_proxy.simulator import catalog
from grok_proxy.simulator.core import reply_pieces
from tests.conftest import KEY
from tests.processes import HOST, Proxy, Simulator, free_port, output_of, proxy

TIMEOUT = 10.0
AUTH = {"Authorization": f"Bearer {KEY}"}


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


def open_ws(url: str, **options: Any) -> ClientConnection:
    ws: ClientConnection = connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **options)
    return ws


def event(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(ws.recv(timeout=TIMEOUT))
    return data


def events_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Events up to and including the first of type `last`."""
    seen = []
    while True:
        item = event(ws)
        seen.append(item)
        if item["type"] == last:
            return seen


def send(ws: ClientConnection, **payload: Any) -> None:
    ws.send(orjson.dumps(payload).decode())


def sessions(sim: Simulator) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{sim.url}/_sim/websockets").json()
    return data


def wait_for_session_end(sim: Simulator, path: str, timeout: float = 5.0) -> dict[str, Any]:
    """The simulator's record of the last session on `path`, once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [s for s in sessions(sim) if s["path"].endswith(path)]
        if records and not records[-1]["open"]:
            return records[-1]
        time.sleep(0.02)
    raise AssertionError(f"no ended session on {path} within {timeout} s: {sessions(sim)}")


def upstream_handshakes(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["headers"].get("upgrade", "").lower() == "websocket"]


def refusal(url: str, **options: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(url, **options)
    return refused.value


# sessions
def test_voice_session_streams_paced_audio_a_function_call_and_done(
    live: Proxy, fresh_sim: Simulator
) -> None:
    pace_ms = 30
    url = f"{ws_url(live.url)}/v1/realtime?model=grok-voice-latest@pace={pace_ms}"
    with open_ws(url, additional_headers={**AUTH, "Cookie": "session=private"}) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"]
        assert event(ws)["type"] == "session.created"
        assert event(ws)["type"] == "conversation.created"
        tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
        send(ws, type="session.update", session={"tools": [tool]})
        assert event(ws)["type"] == "session.updated"
        audio = base64.b64encode(bytes(range(256)) * 20).decode()
        send(ws, type="input_audio_buffer.append", audio=audio)
        send(ws, type="input_audio_buffer.append", audio=audio)
        send(ws, type="input_audio_buffer.commit")
        turn = [e["type"] for e in events_until(ws, "conversation.item.added")]
        assert turn == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
        ]
        send(ws, type="response.create")
        arrivals: list[float] = []
        answer = [event(ws)]
        while answer[-1]["type"] != "response.done":
            answer.append(event(ws))
            if answer[-1]["type"] == "response.output_audio.delta":
                arrivals.append(time.monotonic())
                assert len(base64.b64decode(answer[-1]["delta"])) == 960
    kinds = [e["type"] for e in answer]
    words = reply_pieces(0)
    assert kinds.count("response.output_audio.delta") == len(words)
    assert kinds.count("response.output_audio_transcript.delta") == len(words)
    transcript = "".join(
        e["delta"] for e in answer if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == catalog.REPLY_TEXT
    call = next(e for e in answer if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "get_weather"
    assert answer[-1]["response"]["status"] == "completed"
    # Paced upstream means paced here: the relay passed each delta on as it came, not batched.
    assert arrivals[-1] - arrivals[0] >= (len(words) - 1) * pace_ms / 1000 * 0.8
    handshake = upstream_handshakes(fresh_sim)[-1]
    assert handshake["path"] == "/v1/realtime"
    assert handshake["query"] == f"model=grok-voice-latest@pace={pace_ms}"
    assert handshake["headers"]["authorization"] == f"Bearer {KEY}"
    assert "cookie" not in handshake["headers"]


def test_responses_websocket_mode_across_two_turns(live: Proxy, fresh_sim: Simulator) -> None:
    with open_ws(f"{ws_url(live.url)}/v1/responses", additional_headers=AUTH) as ws:
        send(ws, type="response.create", model="grok-4", input="Hello")
        first = events_until(ws, "response.completed")
        first_id = first[-1]["response"]["id"]
        send(
            ws,
            type="response.create",
            model="grok-4",
            input=[{"role": "user", "content": "And then?"}],
            previous_response_id=first_id,
        )
        second = events_until(ws, "response.completed")
        send(ws, type="response.create", input="x", previous_response_id="resp_unknown")
        missing = event(ws)
    assert second[-1]["response"]["previous_response_id"] == first_id
    assert second[-1]["response"]["id"] != first_id
    assert missing["type"] == "error"
    assert missing["error"]["code"] == "previous_response_not_found"
    # The same events, in the same order, as the HTTP SSE stream of the same request.
    with httpx.stream(
        "POST",
        f"{live.api}/responses",
        json={"model": "grok-4", "input": "Hello", "stream": True},
        headers=AUTH,
        timeout=TIMEOUT,
    ) as response:
        sse_kinds = [
            orjson.loads(line[6:])["type"] for line in response.iter_lines() if line[:6] == "data: "
        ]
    assert [e["type"] for e in first] == sse_kinds


def test_streaming_tts_answers_text_with_audio(live: Proxy, fresh_sim: Simulator) -> None:
    url = f"{ws_url(live.url)}/v1/tts?voice=eve&codec=pcm"
    with open_ws(url, additional_headers=AUTH) as ws:
        for utterance in ("Hello brave new world", "Again"):
            send(ws, type="text.delta", delta=utterance)
            send(ws, type="text.done")
            received = events_until(ws, "audio.done")
            deltas = [e for e in received if e["type"] == "audio.delta"]
            assert len(deltas) == len(utterance.split())
            assert all(base64.b64decode(d["delta"]) for d in deltas)
    assert upstream_handshakes(fresh_sim)[-1]["query"] == "voice=eve&codec=pcm"


def test_streaming_stt_relays_binary_audio_byte_exact(live: Proxy, fresh_sim: Simulator) -> None:
    frames = [os.urandom(size) for size in (3200, 1, 65536, 7)]
    url = f"{ws_url(live.url)}/v1/stt?sample_rate=16000&encoding=pcm"
    with open_ws(url, additional_headers=AUTH) as ws:
        for frame in frames:
            ws.send(frame)
            assert event(ws)["type"] == "transcript.partial"
        send(ws, type="audio.done")
        done = event(ws)
    assert done["type"] == "transcript.done"
    assert done["audio_bytes"] == sum(len(f) for f in frames)
    record = wait_for_session_end(fresh_sim, "/v1/stt")
    binary = [r for r in record["received"] if r["kind"] == "binary"]
    assert [(r["size"], r["sha256"]) for r in binary] == [
        (len(f), hashlib.sha256(f).hexdigest()) for f in frames
    ]


def test_text_and_binary_messages_come_back_unchanged_and_in_order(
    live: Proxy, fresh_sim: Simulator
) -> None:
    messages: list[str | bytes] = [
        os.urandom(2 * 1024 * 1024),
        "plain text",
        "ünïcödé ✓ and emoji 🎙️",
        b"",
        b"\x00\xff" * 1000,
        "",
    ]
    url = f"{ws_url(live.url)}/v1/realtime?model=grok-voice-latest@echo"
    with open_ws(url, additional_headers=AUTH, max_size=None) as ws:
        for message in messages:
            ws.send(message)
        echoed = [ws.recv(timeout=TIMEOUT) for _ in messages]
    assert echoed == messages


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_slow_reader_holds_the_upstream_back_instead_of_filling_memory(
    live: Proxy, fresh_sim: Simulator
) -> None:
    count, size = 200, 512 * 1024  # 100 MiB that the upstream sends at once
    before = rss_mb(live.process.pid)
    url = f"{ws_url(live.url)}/v1/stt?sim=flood={count},size={size}"
    with open_ws(url, additional_headers=AUTH, max_size=None, max_queue=2) as ws:
        fresh_sim.wait_for_stat("ws_messages_out", count, timeout=TIMEOUT)
        # Watch the proxy for a second while the caller reads nothing: it must stop
        # reading upstream rather than hold the 100 MiB.
        peak = before
        for _ in range(20):
            peak = max(peak, rss_mb(live.process.pid))
            time.sleep(0.05)
        indexes = []
        for _ in range(count):
            message = ws.recv(timeout=TIMEOUT)
            assert isinstance(message, bytes)
            assert len(message) == size
            indexes.append(int.from_bytes(message[:8], "big"))
    assert indexes == list(range(count))
    assert peak - before < 40, f"proxy RSS grew {peak - before:.0f} MB for a slow reader"


# handshakes
def test_no_key_is_refused_with_401_and_nothing_sent_upstream(
    live: Proxy, fresh_sim: Simulator
) -> None:
    refused = refusal(f"{ws_url(live.url)}/v1/realtime?model=grok-voice-latest")
    assert refused.response.status_code == 401
    body = orjson.loads(refused.response.body or b"")
    assert body["error"]["code"] == "missing_api_key"
    assert "xai-client-secret" in body["error"]["message"]
    assert refused.response.headers["x-request-id"]
    assert upstream_handshakes(fresh_sim) == []


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503])
def test_upstream_refusals_keep_their_status_and_message(
    live: Proxy, fresh_sim: Simulator, status: int
) -> None:
    url = f"{ws_url(live.url)}/v1/realtime?model=grok-voice-latest@status={status},retry_after=3"
    refused = refusal(url, additional_headers=AUTH)
    assert refused.response.status_code == status
    error = orjson.loads(refused.response.body or b"")["error"]
    direct = httpx.post(
        f"{fresh_sim.base_url}/chat/completions",
        json={"model": f"grok-4@status={status}", "messages": []},
        headers=AUTH,
    ).json()
    assert error["message"] == direct["error"]
    assert refused.response.headers["retry-after"] == "3"


def test_unknown_path_keeps_the_upstreams_404(live: Proxy, fresh_sim: Simulator) -> None:
    refused = refusal(f"{ws_url(live.url)}/v1/no-such-socket", additional_headers=AUTH)
    assert refused.response.status_code == 404
    assert "No WebSocket route" in orjson.loads(refused.response.body or b"")["error"]["message"]


@pytest.fixture(scope="module")
def strict(sim: Simulator) -> Iterator[Proxy]:
    """A proxy with a short connect timeout and a small message limit."""
    with proxy(sim.base_url, xai_connect_timeout="0.5", ws_max_message_bytes="4096") as running:
        yield running


def test_dropped_handshake_is_502_and_silent_upstream_is_504(
    strict: Proxy, fresh_sim: Simulator
) -> None:
    base = f"{ws_url(strict.url)}/v1/realtime?model=grok-voice-latest"
    dropped = refusal(f"{base}@reset", additional_headers=AUTH)
    silent = refusal(f"{base}@hang", additional_headers=AUTH)
    assert dropped.response.status_code == 502
    assert silent.response.status_code == 504
    assert "XAI_CONNECT_TIMEOUT" in orjson.loads(silent.response.body or b"")["error"]["message"]


def test_a_message_over_the_limit_closes_the_session_with_1009(
    strict: Proxy, fresh_sim: Simulator
) -> None:
    url = f"{ws_url(strict.url)}/v1/stt?sim=echo"
    with open_ws(url, additional_headers=AUTH) as ws:
        ws.send(bytes(4096))
        assert ws.recv(timeout=TIMEOUT) == bytes(4096)
        ws.send(bytes(4097))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    record = wait_for_session_end(fresh_sim, "/v1/stt")
    assert record["close_code"] == 1009
    assert [r["size"] for r in record["received"]] == [4096]


# closing
def test_client_close_reaches_the_upstream_with_its_code(live: Proxy, fresh_sim: Simulator) -> None:
    with open_ws(f"{ws_url(live.url)}/v1/stt", additional_headers=AUTH) as ws:
        ws.send(b"\x01\x02")
        event(ws)
        ws.close(4321, "done talking")
    record = wait_for_session_end(fresh_sim, "/v1/stt")
    assert record["closed_by"] == "client"
    assert (record["close_code"], record["close_reason"]) == (4321, "done talking")


def test_client_vanishing_closes_the_upstream_session(live: Proxy, fresh_sim: Simulator) -> None:
    ws = open_ws(f"{ws_url(live.url)}/v1/stt", additional_headers=AUTH, legacy=True)
    ws.send(b"\x01")
    event(ws)
    # No closing handshake: the TCP connection just goes, as when a laptop lid shuts.
    ws.socket.close()
    record = wait_for_session_end(fresh_sim, "/v1/stt")
    assert record["closed_by"] == "client"
    assert record["close_code"] == 1001  # going away


@pytest.mark.parametrize("code", [1000, 1008, 1011, 4001])
def test_upstream_close_codes_reach_the_client(
    live: Proxy, fresh_sim: Simulator, code: int
) -> None:
    url = f"{ws_url(live.url)}/v1/tts?sim=close={code},after=2"
    with open_ws(url, additional_headers=AUTH) as ws:
        send(ws, type="text.delta", delta="one two three four")
        assert event(ws)["type"] == "audio.delta"
        assert event(ws)["type"] == "audio.delta"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code
    assert closed.value.rcvd.reason == "The simulator was asked to close the session."


def test_a_stalled_upstream_keeps_the_session_open_until_the_caller_leaves(
    live: Proxy, fresh_sim: Simulator
) -> None:
    url = f"{ws_url(live.url)}/v1/tts?sim=stall=1"
    with open_ws(url, additional_headers=AUTH) as ws:
        send(ws, type="text.delta", delta="one two three")
        assert event(ws)["type"] == "audio.delta"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # nothing more comes; the session stays open
    record = wait_for_session_end(fresh_sim, "/v1/tts")
    assert record["sent"] == 1
    assert (record["closed_by"], record["close_code"]) == ("client", 1000)


def test_metrics_count_sessions_messages_and_bytes(live: Proxy, fresh_sim: Simulator) -> None:
    with open_ws(f"{ws_url(live.url)}/v1/stt?sim=echo", additional_headers=AUTH) as ws:
        ws.send(b"12345")
        ws.recv(timeout=TIMEOUT)
    wait_for_session_end(fresh_sim, "/v1/stt")
    text = httpx.get(f"{live.url}/metrics").text
    assert 'grok_proxy_websocket_sessions_total{close_code="1000",route="stt",status="101"}' in text
    assert 'grok_proxy_websocket_messages_total{direction="to_upstream"}' in text
    assert 'grok_proxy_websocket_bytes_total{direction="to_caller"}' in text
    assert "grok_proxy_websocket_sessions_open" in text


def access_line(process: Any, request_id: str, timeout: float = 5.0) -> str:
    """The access line of the session with this request id, once it is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in output_of(process).splitlines():
            if f"[{request_id}]" in line and "grok_proxy.access" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def test_each_session_writes_one_access_line(live: Proxy, fresh_sim: Simulator) -> None:
    rid = f"ws-access-{time.monotonic_ns()}"
    with open_ws(
        f"{ws_url(live.url)}/v1/responses", additional_headers={**AUTH, "X-Request-ID": rid}
    ) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == rid
        send(ws, type="response.create", model="grok-4", input="Hi")
        received = len(events_until(ws, "response.completed"))
    line = access_line(live.process, rid)
    assert "WEBSOCKET /v1/responses 101" in line  # the caller's own path
    assert "model=grok-4" in line  # Responses WebSocket mode names it in the first event
    assert "up=1/" in line
    assert f"down={received}/" in line
    assert "close=1000 by caller" in line


# keys
ACCESS_KEY = "gp-access-key-for-websockets-0001"
SERVER_KEY = "xai-server-key-for-websockets-0002"


@pytest.fixture(scope="module")
def shared(sim: Simulator) -> Iterator[Proxy]:
    """A shared deployment with access keys, logging at debug level."""
    with proxy(
        sim.base_url,
        grok_proxy_api_keys=ACCESS_KEY,
        xai_api_key=SERVER_KEY,
        log_level="debug",
    ) as running:
        yield running


def test_access_keys_are_enforced_and_the_server_key_goes_upstream(
    shared: Proxy, fresh_sim: Simulator
) -> None:
    url = f"{ws_url(shared.url)}/v1/realtime?model=grok-voice-latest"
    refused = refusal(url, additional_headers={"Authorization": f"Bearer {KEY}"})
    assert refused.response.status_code == 401
    assert upstream_handshakes(fresh_sim) == []
    with open_ws(url, additional_headers={"Authorization": f"Bearer {ACCESS_KEY}"}) as ws:
        assert event(ws)["type"] == "session.created"
    assert upstream_handshakes(fresh_sim)[-1]["headers"]["authorization"] == f"Bearer {SERVER_KEY}"


def client_secret(proxy_api: str, key: str) -> str:
    response = httpx.post(
        f"{proxy_api}/realtime/client_secrets",
        json={"expires_after": {"seconds": 300}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["expires_at"] > time.time()
    value: str = response.json()["value"]
    return value


def test_a_client_secret_passes_and_its_subprotocol_is_selected(
    shared: Proxy, fresh_sim: Simulator
) -> None:
    secret = client_secret(shared.api, ACCESS_KEY)
    url = f"{ws_url(shared.url)}/v1/realtime?model=grok-voice-latest"
    protocol = f"xai-client-secret.{secret}"
    with open_ws(url, subprotocols=[protocol]) as ws:
        assert ws.subprotocol == protocol
        assert event(ws)["type"] == "session.created"
    handshake = upstream_handshakes(fresh_sim)[-1]
    assert "authorization" not in handshake["headers"]
    assert handshake["headers"]["sec-websocket-protocol"] == protocol
    # xAI judges the token: an unknown one is refused with its 401, not the proxy's.
    bogus = refusal(url, subprotocols=["xai-client-secret.not-issued"])
    assert bogus.response.status_code == 401
    assert "client secret" in orjson.loads(bogus.response.body or b"")["error"]["message"]
    # Neither the keys nor the token ever reach the log, even at debug level.
    output = output_of(shared.process)
    assert "WEBSOCKET /v1/realtime 101" in output
    for secret_text in (ACCESS_KEY, SERVER_KEY, secret, KEY):
        assert secret_text not in output


# clients other than `websockets`
def test_openai_sdk_realtime_client_through_the_proxy(live: Proxy, fresh_sim: Simulator) -> None:
    from openai import AsyncOpenAI

    async def converse() -> list[str]:
        client = AsyncOpenAI(api_key=KEY, base_url=live.api)
        kinds: list[str] = []
        async with client.realtime.connect(model="grok-voice-latest@pace=1") as connection:
            await connection.send({"type": "response.create"})
            async for item in connection:
                kinds.append(item.type)
                if item.type == "response.done":
                    break
        await client.close()
        return kinds

    kinds = asyncio.run(asyncio.wait_for(converse(), TIMEOUT))
    assert kinds[0] == "session.created"
    assert "response.output_audio.delta" in kinds
    assert kinds[-1] == "response.done"
    assert upstream_handshakes(fresh_sim)[-1]["path"] == "/v1/realtime"


def test_sigterm_ends_open_sessions_with_1001_after_the_grace(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url, shutdown_grace_seconds="3") as running:
        ws = open_ws(f"{ws_url(running.url)}/v1/stt", additional_headers=AUTH, legacy=True)
        ws.send(b"\x01")
        event(ws)
        running.process.send_signal(signal.SIGTERM)
        # Still relaying during the grace period.
        ws.send(b"\x02")
        assert event(ws)["type"] == "transcript.partial"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        running.process.wait(timeout=TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert "shutting down" in closed.value.rcvd.reason
    record = wait_for_session_end(fresh_sim, "/v1/stt")
    assert record["close_code"] == 1001


# a real browser
PAGE = """<!doctype html><title>voice</title><script>
async function voice(api, wsBase, key) {
  // A backend would mint the token; the page does it here to stay self-contained.
  const minted = await fetch(api + "/realtime/client_secrets", {
    method: "POST",
    headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    body: JSON.stringify({expires_after: {seconds: 60}}),
  });
  const {value} = await minted.json();
  return await new Promise((resolve, reject) => {
    const ws = new WebSocket(
      wsBase + "/realtime?model=grok-voice-latest@pace=1", ["xai-client-secret." + value]);
    const kinds = [];
    ws.onopen = () => ws.send(JSON.stringify({type: "response.create"}));
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      kinds.push(event.type);
      if (event.type === "response.done") {
        ws.close(1000);
        resolve({protocol: ws.protocol, kinds: kinds});
      }
    };
    ws.onerror = () => reject(new Error("WebSocket error"));
  });
}
</script>"""


def serve_page(port: int) -> ThreadingHTTPServer:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def evaluate(debugger_url: str, expression: str) -> Any:
    """Run `expression` in the page through the DevTools protocol; its awaited value."""
    from websockets.asyncio.client import connect as connect_async

    async with connect_async(debugger_url, max_size=None) as devtools:
        # The page may still be replacing its first document (a context that is then
        # destroyed): ask again until the call runs in the loaded page.
        for attempt in range(1, 100):
            call = {
                "id": attempt,
                "method": "Runtime.evaluate",
                "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
            }
            await devtools.send(orjson.dumps(call).decode())
            reply = orjson.loads(await devtools.recv())
            while reply.get("id") != attempt:
                reply = orjson.loads(await devtools.recv())
            if "context" in reply.get("error", {}).get("message", ""):
                await asyncio.sleep(0.1)
                continue
            assert "result" in reply, reply
            result = reply["result"]
            assert "exceptionDetails" not in result, result["exceptionDetails"]
            return result["result"]["value"]
    raise AssertionError("the page never got an execution context")


def page_target(debug_port: int, url: str, browser: subprocess.Popen[bytes]) -> str:
    """The DevTools WebSocket URL of the page at `url`, once Chromium has it open."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert browser.poll() is None, "Chromium exited"
        try:
            for target in httpx.get(f"http://{HOST}:{debug_port}/json/list").json():
                if target["type"] == "page" and target["url"] == url:
                    debugger: str = target["webSocketDebuggerUrl"]
                    return debugger
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("Chromium did not open the page")


@pytest.mark.slow  # Chromium
def test_headless_chromium_talks_through_the_proxy_with_an_ephemeral_token(
    sim: Simulator,
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    page_port, debug_port = free_port(), free_port()
    page_url = f"http://{HOST}:{page_port}/"
    server = serve_page(page_port)
    try:
        with (
            proxy(sim.base_url, cors_allow_origins=f"http://{HOST}:{page_port}") as running,
            # Chromium's helper processes may still write the profile as it is removed.
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile,
        ):
            browser = subprocess.Popen(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    f"--remote-debugging-port={debug_port}",
                    f"--user-data-dir={profile}",
                    page_url,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                debugger = page_target(debug_port, page_url, browser)
                arguments = orjson.dumps([running.api, ws_url(running.api), KEY]).decode()
                # The page target exists before its script has run: wait for it in the page.
                call = (
                    "(async () => { while (typeof voice !== 'function') "
                    "await new Promise(r => setTimeout(r, 20)); "
                    f"return await voice(...{arguments}); }})()"
                )
                result = asyncio.run(asyncio.wait_for(evaluate(debugger, call), 30))
            finally:
                browser.terminate()
                browser.wait(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert result["protocol"].startswith("xai-client-secret.")
    assert result["kinds"][0] == "session.created"
    assert "response.output_audio.delta" in result["kinds"]
    assert result["kinds"][-1] == "response.done"
