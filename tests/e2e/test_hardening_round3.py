"""Issue 24's attacks on a shared proxy, replayed against the real proxy process.

Every check must decide on the value xAI will act on: a body whatever its Content-Type or
escapes, a WebSocket turn whatever its frame or escapes, a WebSocket head whatever its
shape. The simulator's request counter says what reached "xAI": a refused attack leaves it
unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
import signal
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.e2e.test_teams import ADMIN_TOKEN, Shared, cli, key_in, team_settings
from tests.processes import Proxy, Simulator, output_of, proxy

# Keys whose value a member's checks decide on.
GUARDED_KEYS = ("model", "previous_response_id", "file_id", "input_file_id")
CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",  # curl -d
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "text/html",
)


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


def encode(body: dict[str, Any], style: str, secret: str) -> bytes:
    """The body as JSON text, its guarded keys or the secret value written another way."""
    text = orjson.dumps(body).decode()
    for key in GUARDED_KEYS:
        if style == "escaped keys":
            text = text.replace(f'"{key}":', f'"{escaped(key)}":')
        elif style == "duplicate keys":  # a harmless value first, the attack last
            text = text.replace(f'"{key}":', f'"{key}":null,"{key}":')
    if style == "escaped value":
        text = text.replace(f'"{secret}"', f'"{escaped(secret[:3])}{secret[3:]}"')
    return text.encode()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, sim: Simulator) -> Iterator[Shared]:
    """A shared proxy (SQLite): alice, bob, carol who may use grok-4 only, and dora who may
    use grok-3-mini only (not the simulator's default models)."""
    settings = team_settings({"grok_proxy_data_dir": str(tmp_path_factory.mktemp("round3"))})
    alice = key_in(cli(settings, "members", "add", "alice"))
    with proxy(sim.base_url, workers=1, **settings) as running:
        shared = Shared(settings, running, {"alice": alice})
        shared.add("bob")
        shared.add("carol", models=["grok-4"])
        shared.add("dora", models=["grok-3-mini"])
        yield shared


def post(team: Shared, member: str, path: str, body: bytes, content_type: str | None) -> Any:
    headers = {"authorization": f"Bearer {team.keys[member]}"}
    if content_type is not None:
        headers["content-type"] = content_type
    return httpx.post(f"{team.proxy.api}{path}", content=body, headers=headers, timeout=15)


def test_member_checks_see_the_parsed_body_whatever_its_label_or_escapes(
    team: Shared, sim: Simulator
) -> None:
    """Item 1: 5 attacks x 4 encodings x 8 content types, none of which reaches xAI."""
    made = team.call("alice", "POST", "/responses", json={"model": "grok-4", "input": "hi"})
    upload = team.call("alice", "POST", "/files", files={"file": ("a.txt", b"alice's notes")})
    alice_response, alice_file = made.json()["id"], upload.json()["id"]
    chat_with_file = {
        "model": "grok-4",
        "messages": [
            {"role": "user", "content": [{"type": "file", "file": {"file_id": alice_file}}]}
        ],
    }
    attacks = [  # (member, path, body, secret, status a refusal must have)
        (
            "bob",
            "/responses",
            {"model": "grok-4", "input": "hi", "previous_response_id": alice_response},
            alice_response,
            404,
        ),
        ("bob", "/chat/completions", chat_with_file, alice_file, 404),
        ("bob", "/batches", {"name": "b", "input_file_id": alice_file}, alice_file, 404),
        (
            "carol",
            "/chat/completions",
            {"model": "grok-3-mini", "messages": [{"role": "user", "content": "hi"}]},
            "grok-3-mini",
            403,
        ),
        ("carol", "/responses", {"model": "grok-3-mini", "input": "hi"}, "grok-3-mini", 403),
    ]
    styles = ("plain", "escaped keys", "escaped value", "duplicate keys")
    leaks = []
    before = sim.stats()["requests"]
    for (member, path, body, secret, status), style, content_type in itertools.product(
        attacks, styles, CONTENT_TYPES
    ):
        answer = post(team, member, path, encode(body, style, secret), content_type)
        if answer.status_code != status:
            leaks.append((member, path, style, content_type, answer.status_code))
    assert leaks == []
    assert sim.stats()["requests"] == before  # not one of the 160 went upstream

    # The same labels on an allowed request still work: the proxy reads any body as JSON.
    allowed = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
    answer = post(team, "carol", "/chat/completions", orjson.dumps(allowed), "text/plain")
    assert answer.status_code == 200, answer.text


MODEL_ROUTES = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/messages",
    "/messages/count_tokens",
    "/embeddings",
    "/tokenize-text",
    "/images/generations",
    "/images/generate",
    "/images/edits",
    "/vision/analyze",
    "/videos/generations",
    "/videos/edits",
    "/videos/extensions",
)


def test_model_allow_lists_hold_on_every_model_taking_route(team: Shared, sim: Simulator) -> None:
    """Item 1: a member limited to grok-4 names another model, the key escaped, as text."""
    before = sim.stats()["requests"]
    body = f'{{"{escaped("model")}": "grok-3-mini", "prompt": "a cat", "input": "hi"}}'
    answers = {
        path: post(team, "carol", path, body.encode(), "text/plain").status_code
        for path in MODEL_ROUTES
    }
    assert answers == dict.fromkeys(MODEL_ROUTES, 403)
    # Naming no model would get a default one: refused for a member limited to some.
    unnamed = {
        path: post(team, "carol", path, b'{"prompt": "a cat"}', None).status_code
        for path in MODEL_ROUTES
    }
    assert unnamed == dict.fromkeys(MODEL_ROUTES, 403)
    assert sim.stats()["requests"] == before


def test_a_body_the_gate_cannot_parse_is_refused_not_forwarded(
    team: Shared, sim: Simulator
) -> None:
    """Item 1: what is not JSON is refused with 400 in the envelope, on validated routes and
    on routes forwarded as sent alike."""
    before = sim.stats()["requests"]
    for path, body in (
        ("/chat/completions", b"model=grok-3-mini&messages=hi"),
        ("/batches", b"input_file_id=file_1"),
        ("/responses", b'{"model": "grok-4", "input": "hi", "temperature": NaN}'),
    ):
        answer = post(team, "carol", path, body, "application/x-www-form-urlencoded")
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_json"
        assert error["message"].startswith("Request body is not valid JSON")
    assert sim.stats()["requests"] == before


# WebSockets
def ws(team: Shared, member: str, path: str) -> ClientConnection:
    url = f"ws{team.proxy.api.removeprefix('http')}/{path}"
    headers = {"Authorization": f"Bearer {team.keys[member]}"}
    conn: ClientConnection = connect(url, additional_headers=headers, open_timeout=15)
    return conn


def answer_to(conn: ClientConnection, message: str | bytes) -> dict[str, Any]:
    conn.send(message)
    event: dict[str, Any] = orjson.loads(conn.recv(timeout=15))
    return event


def received_upstream(sim: Simulator, path: str) -> int:
    """Messages the simulator's one open session on `path` has received so far."""
    records = httpx.get(f"{sim.url}/_sim/websockets").json()
    (record,) = [r for r in records if r["path"].endswith(path) and r["open"]]
    return len(record["received"])


def test_websocket_turns_are_decided_on_their_parsed_type(team: Shared, sim: Simulator) -> None:
    """Item 2: escaped, binary and unparsable `response.create` turns never pass unchecked."""
    with ws(team, "alice", "responses") as conn:
        conn.send(
            orjson.dumps({"type": "response.create", "model": "grok-4", "input": "Hi"}).decode()
        )
        while (event := orjson.loads(conn.recv(timeout=15)))["type"] != "response.completed":
            pass
        alice_response = event["response"]["id"]
    escaped_type = '{"type": "response\\u002ecreate", "model": "grok-3-mini", "input": "Hi"}'
    with ws(team, "carol", "responses") as conn:
        refusals = [
            answer_to(conn, escaped_type),
            answer_to(conn, escaped_type.encode()),  # a binary frame
            answer_to(conn, b'{"type": "response.create", "model": "grok-3-mini"}'),
            answer_to(conn, '{"type": "response.create", "model": "grok-3-mini",}'),
            answer_to(conn, '{"type": "response.create", "model": NaN}'),
        ]
        assert received_upstream(sim, "/v1/responses") == 0
    assert [(r["type"], r["status"]) for r in refusals] == [
        ("error", 403),
        ("error", 403),
        ("error", 403),
        ("error", 400),
        ("error", 400),
    ]
    continued = f'{{"type": "response\\u002ecreate", "previous_response_id": "{alice_response}"}}'
    with ws(team, "bob", "responses") as conn:
        refused = answer_to(conn, continued)
        assert received_upstream(sim, "/v1/responses") == 0
    assert (refused["status"], refused["error"]["code"]) == (404, "not_found")


def test_realtime_models_are_checked_wherever_they_are_named(team: Shared, sim: Simulator) -> None:
    """Item 6: every `model` of the URL, `session.update` and a nested `response.model`."""
    with pytest.raises(InvalidStatus) as refused:
        ws(team, "carol", "realtime?model=grok-4&model=grok-3-mini")
    assert refused.value.response.status_code == 403
    with ws(team, "carol", "realtime?model=grok-4") as conn:
        conn.recv(timeout=15)  # session.created
        conn.recv(timeout=15)  # conversation.created
        update = {"type": "session.update", "session": {"model": "grok-3-mini"}}
        create = {"type": "response.create", "response": {"model": "grok-3-mini"}}
        refusals = [answer_to(conn, orjson.dumps(e).decode()) for e in (update, create)]
        assert received_upstream(sim, "/v1/realtime") == 0
    assert [(r["status"], r["error"]["code"]) for r in refusals] == [
        (403, "model_not_allowed"),
        (403, "model_not_allowed"),
    ]


# WebSocket heads
HEADERS_TIMEOUT = 4.0


def bad_head(port: int, number: int) -> bytes:
    """An upgrade head uvicorn parses but websockets cannot: a long line, or 129 headers."""
    lines = [
        "GET /v1/realtime HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if number % 2:
        lines.append("X-Long: " + "a" * 9000)
    else:
        lines += [f"X-Many-{i}: {i}" for i in range(129)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def held_heads(port: int, count: int, health: str) -> tuple[list[bytes], list[int]]:
    """Bad heads in waves of 100 connections held open, /health during each; every answer."""

    async def one(number: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bad_head(port, number))
        await writer.drain()
        return reader, writer

    answers: list[bytes] = []
    statuses: list[int] = []
    async with httpx.AsyncClient() as client:
        for wave in range(0, count, 100):
            connections = await asyncio.gather(*(one(n) for n in range(wave, wave + 100)))
            try:
                answer = await client.get(health, timeout=HEADERS_TIMEOUT)
                statuses.append(answer.status_code)
                async with asyncio.timeout(HEADERS_TIMEOUT):
                    # Read to the end: the proxy must answer and close each one itself.
                    answers += await asyncio.gather(*(r.read() for r, _ in connections))
            finally:
                for _, writer in connections:
                    writer.close()
    return answers, statuses


def test_unparsable_websocket_heads_are_answered_and_closed(sim: Simulator) -> None:
    """Item 3: 300 heads websockets refuses are answered 400 and closed in time; /health
    answers all along (with 200 connections allowed, held ones would starve it)."""
    with proxy(
        sim.base_url, max_connections="200", headers_timeout=str(HEADERS_TIMEOUT)
    ) as running:
        port = int(running.url.rsplit(":", 1)[1])
        answers, health = asyncio.run(held_heads(port, 300, f"{running.url}/health"))
    assert health == [200, 200, 200]
    assert len(answers) == 300
    assert {answer.split(b"\r\n", 1)[0] for answer in answers} == {b"HTTP/1.1 400 Bad Request"}
    assert all(b'"code":"invalid_handshake"' in answer for answer in answers)


# The admin API and validated bodies
def test_unmatched_admin_requests_answer_in_the_envelope(team: Shared) -> None:
    """Item 7: 404/405 in the envelope, no traceback; a taken name is 409."""
    missing = team.admin("GET", "/nothing-here")
    wrong_method = team.admin("DELETE", "/usage")
    taken = team.admin("POST", "/members", json={"name": "alice"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (
        405,
        "method_not_allowed",
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "member_exists")
    assert "Traceback" not in output_of(team.proxy.process)


@pytest.mark.parametrize(
    "limits",
    [
        {"dollars_per_day": 1e308},
        {"dollars_per_month": -1},
        {"rpm": 1.5},
        {"tpm": 10**30},
        {"models": [f"grok-{n}" for n in range(100_000)]},
    ],
)
def test_admin_limits_out_of_range_are_refused(team: Shared, limits: dict[str, Any]) -> None:
    """Item 8: limits the proxy cannot hold (or that would break every later request)."""
    name = "zed-" + "-".join(limits)  # each case its own member: a 409 is no refusal here
    answer = team.admin("POST", "/members", json={"name": name, **limits})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_value"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "grok-4", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b'{"model": "grok-4", "messages": [], "temperature": Infinity}',
        b'{"model": "grok-4", "messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity,'
        b' "stream": true}',
    ],
)
def test_nan_and_infinity_are_refused_as_not_json(live: Proxy, body: bytes) -> None:
    """Item 8: not JSON (RFC 8259), so 400 in the envelope, never a 500."""
    answer = httpx.post(
        f"{live.api}/chat/completions",
        content=body,
        headers={"authorization": "Bearer k", "content-type": "application/json"},
        timeout=15,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_json"


# Relayed headers
SERVER_KEY_ECHOED = "xai-server-secret-77e1c0ffee"


class HeaderEchoingUpstream(BaseHTTPRequestHandler):
    """An upstream that echoes the credentials it received in its response headers."""

    protocol_version = "HTTP/1.1"  # websockets reads no HTTP/1.0 answer to an upgrade

    def answer(self, status: int) -> None:
        received = self.headers.get("authorization", "")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-xai-debug-authorization", received)
        self.send_header("x-ratelimit-key", received.removeprefix("Bearer "))
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        # A WebSocket upgrade is refused (401) like a plain GET is answered (200).
        self.answer(401 if self.headers.get("upgrade") else 200)

    def do_POST(self) -> None:
        self.answer(401)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads answers, not this server's log."""


def test_relayed_upstream_headers_never_show_the_server_key() -> None:
    """Item 9: HTTP 200 and 401 answers and WebSocket refusals alike."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HeaderEchoingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}/v1"
    headers = {"authorization": "Bearer team-key-1"}
    try:
        with proxy(
            upstream, grok_proxy_api_keys="team-key-1", xai_api_key=SERVER_KEY_ECHOED
        ) as running:
            listed = httpx.get(f"{running.api}/models", headers=headers, timeout=15)
            refused = httpx.post(
                f"{running.api}/chat/completions",
                json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
                headers=headers,
                timeout=15,
            )
            with pytest.raises(InvalidStatus) as upgrade:
                connect(
                    f"ws{running.api.removeprefix('http')}/realtime",
                    additional_headers=headers,
                    open_timeout=15,
                )
    finally:
        server.shutdown()
        server.server_close()
    ws_headers = upgrade.value.response.headers
    assert (listed.status_code, refused.status_code) == (200, 401)
    assert upgrade.value.response.status_code == 401
    for relayed in (listed.headers, refused.headers, ws_headers):
        assert "x-ratelimit-key" in relayed  # relayed, with the key taken out
        assert all(SERVER_KEY_ECHOED not in value for value in relayed.values())


def test_operational_routes_are_closed_on_a_team_with_database_members(team: Shared) -> None:
    """Item 4: no ops token set, members in the database: /metrics (every member's usage)
    and the rest answer neither strangers nor members, only the operator."""
    paths = ["/metrics", "/docs", "/openapi.json", "/health?upstream=1"]

    def statuses(token: str | None) -> set[int]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return {httpx.get(f"{team.proxy.url}{p}", headers=headers).status_code for p in paths}

    assert statuses(None) == {401}
    assert statuses(team.keys["bob"]) == {401}
    assert statuses(ADMIN_TOKEN) == {200}
    assert httpx.get(f"{team.proxy.url}/health").status_code == 200  # liveness stays open


def secret_session(running: Proxy, path: str, token: str) -> ClientConnection:
    """A browser's session: no Authorization header, the token as the subprotocol."""
    url = f"ws{running.api.removeprefix('http')}/{path}"
    offered = [Subprotocol(f"xai-client-secret.{token}")]
    conn: ClientConnection = connect(url, subprotocols=offered, open_timeout=15)
    return conn


def refused_status(running: Proxy, path: str, token: str) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        secret_session(running, path, token)
    response = refused.value.response
    return response.status_code, orjson.loads(response.body or b"{}")["error"]["code"]


def test_made_up_client_secrets_reach_no_route_a_shared_proxy_refuses(
    team: Shared, sim: Simulator
) -> None:
    """Item 5: a token the proxy did not mint opens nothing beyond the session routes, and
    TEAM_CLIENT_SECRETS=minted refuses it everywhere while minted ones still work."""
    handshakes = sim.stats().get("ws_handshakes", 0)
    for path in ("chat/completions", "files", "batches/x"):
        assert refused_status(team.proxy, path, "made-up") == (403, "route_not_shared")
    assert sim.stats().get("ws_handshakes", 0) == handshakes

    settings = {**team.settings, "team_client_secrets": "minted"}
    with proxy(sim.base_url, workers=1, **settings) as strict:
        minted = team.call_on(strict, "alice", "POST", "/realtime/client_secrets", json={})
        assert refused_status(strict, "realtime", "made-up") == (401, "invalid_client_secret")
        assert sim.stats().get("ws_handshakes", 0) == handshakes
        with secret_session(strict, "responses", minted.json()["value"]) as conn:
            conn.send('{"type": "response.create", "model": "grok-4", "input": "Hi"}')
            assert orjson.loads(conn.recv(timeout=15))["type"] == "response.created"


# Shutdown
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def head_of(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def text_frame(payload: bytes, *, masked: bool) -> bytes:
    """One small text frame (a caller's is masked; a zero mask leaves the payload as is)."""
    assert len(payload) < 126
    if masked:
        return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload
    return bytes([0x81, len(payload)]) + payload


class SilentUpstream(socketserver.BaseRequestHandler):
    """A WebSocket upstream that starts a response, then never says another word (nor
    answers a close)."""

    def handle(self) -> None:
        head = head_of(self.request)
        key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
        if key is None:  # plain HTTP (the price list): nothing here
            self.request.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(key.group(1) + WS_GUID).digest())
        self.request.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.request.recv(4096)  # the relayed response.create
        started = b'{"type":"response.created","response":{"id":"resp_silent"}}'
        self.request.sendall(text_frame(started, masked=False))
        while self.request.recv(4096):
            pass


def test_sigterm_keeps_a_busy_websocket_session_s_record(
    sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Item 10: a turn under way, a caller that never answers the 1001 close and an upstream
    slow to close: after SIGTERM the session's access line and usage are still there."""
    upstream = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SilentUpstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    settings = team_settings({"grok_proxy_data_dir": str(tmp_path_factory.mktemp("sigterm"))})
    key = key_in(cli(settings, "members", "add", "walt"))
    base = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    try:
        with proxy(base, workers=1, shutdown_grace_seconds="2", **settings) as running:
            port = int(running.url.rsplit(":", 1)[1])
            caller = socket.create_connection(("127.0.0.1", port), timeout=15)
            caller.sendall(
                b"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + key.encode() + b"\r\n\r\n"
            )
            assert head_of(caller).startswith(b"HTTP/1.1 101")
            turn = b'{"type":"response.create","model":"grok-4","input":"Hi"}'
            caller.sendall(text_frame(turn, masked=True))
            assert b"response.created" in caller.recv(4096)  # the turn is under way
            running.process.send_signal(signal.SIGTERM)
            running.process.wait(timeout=30)
            output = output_of(running.process)
            caller.close()
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert "WEBSOCKET /v1/responses" in output
    rows = orjson.loads(cli(settings, "usage", "--member", "walt", "--json"))
    assert sum(row["requests"] for row in rows) == 2  # the session and its turn


def test_model_allow_lists_hold_inside_batches(team: Shared, sim: Simulator) -> None:
    """Item 1: a batch's requests each name a model; a model-limited member's must all be
    allowed, and a file's requests (which the gate cannot read) are not batched for it."""
    batch = team.call("carol", "POST", "/batches", json={"name": "c"}).json()["batch_id"]
    upload = team.call("carol", "POST", "/files", files={"file": ("b.jsonl", b"{}")})

    def add(model: str | None) -> int:
        chat: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
        if model is not None:
            chat["model"] = model
        item = {"batch_request_id": "r1", "batch_request": {"chat_get_completion": chat}}
        body = orjson.dumps({"batch_requests": [item]})
        return int(
            post(team, "carol", f"/batches/{batch}/requests", body, "text/plain").status_code
        )

    before = sim.stats()["requests"]
    from_file = {"name": "f", "input_file_id": upload.json()["id"]}
    assert post(team, "carol", "/batches", orjson.dumps(from_file), None).status_code == 403
    assert (add("grok-3-mini"), add(None)) == (403, 403)
    assert sim.stats()["requests"] == before
    assert add("grok-4") == 200


# A default model for a member limited to others (the review of issue 24, round 4)
def until_done(conn: ClientConnection, message: str) -> dict[str, Any]:
    """The event that ends the turn `message` starts: its end, or its refusal."""
    conn.send(message)
    while (event := orjson.loads(conn.recv(timeout=15)))["type"] not in {
        "response.completed",
        "error",
    }:
        pass
    result: dict[str, Any] = event
    return result


def test_a_responses_turn_naming_no_model_gets_no_default(team: Shared, sim: Simulator) -> None:
    """A: each turn is decided on the model it will run on (its own, else the URL's), not on
    an earlier turn's or a `response.model` the upstream does not read."""
    named = '{"type": "response.create", "input": "hi", "model": "grok-3-mini"}'
    unnamed = '{"type": "response.create", "input": "hi"}'
    nested = '{"type": "response.create", "input": "hi", "response": {"model": "grok-3-mini"}}'
    with ws(team, "dora", "responses") as conn:
        first = until_done(conn, named)
        refusals = [until_done(conn, unnamed), until_done(conn, nested)]
        assert received_upstream(sim, "/v1/responses") == 1  # the named turn only
    assert (first["type"], first["response"]["model"]) == ("response.completed", "grok-3-mini")
    assert [(r["status"], r["error"]["code"]) for r in refusals] == [
        (403, "model_not_allowed"),
        (403, "model_not_allowed"),
    ]
    # The URL's model serves a turn that names none; a member without limits is as before.
    with ws(team, "dora", "responses?model=grok-3-mini") as conn:
        served = until_done(conn, unnamed)
    with ws(team, "alice", "responses") as conn:
        default = until_done(conn, unnamed)
    assert served["response"]["model"] == "grok-3-mini"
    assert default["response"]["model"] == "grok-4"


def test_a_realtime_session_of_a_model_limited_member_names_its_model(
    team: Shared, sim: Simulator
) -> None:
    """B: without a model in the URL the voice default would answer (server-started
    responses name none): refused at the handshake; and every model a message names is
    checked, not only the first."""
    before = sim.stats()["requests"]
    for path in ("realtime", "realtime?model", "realtime?model="):
        with pytest.raises(InvalidStatus) as refused:
            ws(team, "dora", path)
        answer = refused.value.response
        assert answer.status_code == 403
        assert orjson.loads(answer.body or b"")["error"]["code"] == "model_not_allowed"
    assert sim.stats()["requests"] == before
    with ws(team, "dora", "realtime?model=grok-3-mini") as conn:
        conn.recv(timeout=15)  # session.created
        conn.recv(timeout=15)  # conversation.created
        both = {"type": "response.create", "model": "grok-3-mini", "response": {"model": "grok-4"}}
        update = {"type": "session.update", "model": "grok-4"}
        refusals = [answer_to(conn, orjson.dumps(e).decode()) for e in (both, update)]
        assert received_upstream(sim, "/v1/realtime") == 0
    assert [(r["status"], r["error"]["code"]) for r in refusals] == [
        (403, "model_not_allowed"),
        (403, "model_not_allowed"),
    ]
    with ws(team, "alice", "realtime") as conn:  # no limits: the default, as before
        assert orjson.loads(conn.recv(timeout=15))["type"] == "session.created"


def test_a_batch_item_naming_no_model_gets_no_default(team: Shared, sim: Simulator) -> None:
    """C: an item without a request (or a model) would run on a default model."""
    batch = team.call("carol", "POST", "/batches", json={"name": "c"}).json()["batch_id"]
    before = sim.stats()["requests"]
    items: list[list[Any]] = [[{"batch_request": {}}], [{}], [{"batch_request_id": "a"}]]
    answers = [
        team.call("carol", "POST", f"/batches/{batch}/requests", json={"batch_requests": i})
        for i in items
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (403, "model_not_allowed")
    ] * 3
    assert sim.stats()["requests"] == before


def test_speech_names_no_model_and_is_governed_by_the_routes_limit(
    team: Shared, sim: Simulator
) -> None:
    """/tts: xAI's body names no model, so a model allow-list does not apply to it (a
    required `model` field would be one xAI does not document); the routes limit does."""
    speech = {"text": "hi", "voice_id": "eve"}
    before = sim.stats()["requests"]
    assert team.call("dora", "POST", "/tts", json=speech).status_code != 403
    assert sim.stats()["requests"] == before + 1
    team.add("erin", routes=["chat/completions"])
    refused = team.call("erin", "POST", "/tts", json=speech)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "route_not_allowed")
    assert sim.stats()["requests"] == before + 1


def test_a_member_transcribes_speech_sent_as_multipart(team: Shared, sim: Simulator) -> None:
    """/stt takes audio as multipart form data, as /files does: it streams through unread
    (it names no object and no model), instead of being refused as malformed JSON."""
    before = sim.stats()["requests"]
    audio = {"file": ("hello.wav", b"RIFF....WAVEfmt ", "audio/wav")}
    answer = team.call("dora", "POST", "/stt", files=audio)
    assert answer.status_code != 400, answer.text
    assert sim.stats()["requests"] == before + 1
    assert sim.last_request()["path"] == "/v1/stt"
