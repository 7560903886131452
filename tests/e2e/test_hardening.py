"""Issue 12's attacks, replayed with raw sockets against the real proxy process."""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from tests.processes import Proxy, Simulator, output_of, proxy, refused_start

KEY = "xai-test-key-0123456789"


def port_of(running: Proxy) -> int:
    return int(running.url.rsplit(":", 1)[1])


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def logged(running: Proxy, text: str, timeout: float = 5.0) -> str:
    """The first log line containing `text`, waiting for the log writer (it batches lines)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in output_of(running.process).splitlines() if text in line]
        if lines:
            return lines[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {text!r}")
        time.sleep(0.05)


class RawClient:
    """A socket whose answer is read by a thread while the test keeps sending."""

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.received = bytearray()
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
        except OSError:
            pass
        self.closed.set()

    def send(self, data: bytes) -> bool:
        """Send; False once the proxy stopped taking bytes (it answered and closed)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def answer(self, timeout: float = 20.0) -> tuple[int, dict[str, object]]:
        """Status and JSON body of the answer, once the proxy closed the connection."""
        assert self.closed.wait(timeout), "the proxy kept the connection open"
        self.sock.close()
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        assert head, "the connection closed without an answer"
        status = int(head.split(b" ", 2)[1])
        payload: dict[str, object] = orjson.loads(body)
        return status, payload

    def close(self) -> None:
        self.sock.close()


def flood_headers(port: int, size: int, results: list[int], single_value: bool) -> None:
    """Send `size` bytes of request headers (tiny ones, or one huge value); note the status."""
    client = RawClient(port)
    client.send(b"GET /health HTTP/1.1\r\nhost: proxy\r\n")
    if single_value:
        client.send(b"x-big: ")
        chunk = b"y" * (1 << 20)
    else:
        chunk = b"a: b\r\n" * (1 << 18)
    sent = 0
    while sent < size and client.send(chunk):
        sent += len(chunk)
    status, _ = client.answer()
    results.append(status)


def test_oversized_headers_are_refused_early_without_memory_or_stalls(live: Proxy) -> None:
    port = port_of(live)
    baseline = rss_mb(live.process.pid)
    results: list[int] = []
    floods = [
        threading.Thread(target=flood_headers, args=(port, 32 << 20, results, index == 3))
        for index in range(4)
    ]
    for flood in floods:
        flood.start()
    # Other callers are served while the floods arrive.
    assert httpx.get(f"{live.url}/health", timeout=10).status_code == 200
    for flood in floods:
        flood.join(30)
    assert results == [431, 431, 431, 431]
    # Before the fix, four such floods took the proxy from 61 MB to over 1 GB.
    assert rss_mb(live.process.pid) - baseline < 64
    assert httpx.get(f"{live.url}/health", timeout=10).status_code == 200


def test_oversized_url_gets_414_and_headers_under_the_limit_pass(live: Proxy) -> None:
    client = RawClient(port_of(live))
    client.send(b"GET /health?q=" + b"a" * 300_000 + b" HTTP/1.1\r\nhost: proxy\r\n\r\n")
    status, body = client.answer()
    assert status == 414
    assert "MAX_HEADER_BYTES" in str(body)
    near_limit = httpx.get(f"{live.url}/health", headers={"x-a": "b" * 60_000})
    assert near_limit.status_code == 200
    over = httpx.get(f"{live.url}/health", headers={"x-a": "b" * 70_000})
    assert over.status_code == 431
    assert over.json()["error"]["code"] == "request_headers_too_large"


@pytest.fixture(scope="module")
def impatient(sim: Simulator) -> Iterator[Proxy]:
    """A proxy with one-second deadlines for heads and bodies, and a 100 bytes/s minimum."""
    with proxy(
        sim.base_url, 1, headers_timeout="1", body_timeout="1", body_min_rate="100"
    ) as running:
        yield running


def test_slow_headers_are_cut_at_the_deadline(impatient: Proxy) -> None:
    client = RawClient(port_of(impatient))
    client.send(b"GET /health HTTP/1.1\r\nhost: proxy\r\n")
    # One header line every 0.2 s: each byte is in time, the head as a whole is not.
    for index in range(50):
        if client.closed.is_set() or not client.send(b"x-%d: y\r\n" % index):
            break
        time.sleep(0.2)
    status, body = client.answer(timeout=5)
    assert status == 408
    assert "HEADERS_TIMEOUT" in str(body)
    assert httpx.get(f"{impatient.url}/health").status_code == 200
    assert "408" in logged(impatient, "HEADERS_TIMEOUT")


def slow_body_request(length: int) -> bytes:
    return (
        b"POST /api/v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n"
        b"authorization: Bearer " + KEY.encode() + b"\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % length
    )


def test_trickled_body_is_cut_below_the_minimum_rate(impatient: Proxy) -> None:
    client = RawClient(port_of(impatient))
    client.send(slow_body_request(1000))
    # A byte every 0.2 s never leaves a second of silence, but averages 5 bytes/s.
    for _ in range(50):
        if client.closed.is_set() or not client.send(b" "):
            break
        time.sleep(0.2)
    status, body = client.answer(timeout=5)
    assert status == 408
    assert "BODY_MIN_RATE" in str(body)


def test_stalled_body_is_cut_after_the_body_timeout(impatient: Proxy) -> None:
    client = RawClient(port_of(impatient))
    client.send(slow_body_request(1000) + b'{"model": ')
    status, body = client.answer(timeout=10)
    assert status == 408
    assert "BODY_TIMEOUT" in str(body)
    assert httpx.get(f"{impatient.url}/health").status_code == 200


@pytest.fixture(scope="module")
def capped(sim: Simulator) -> Iterator[tuple[Proxy, int]]:
    """A proxy with MAX_CONNECTIONS=3, started with a soft open-files limit of 512.

    Yields the proxy and the hard limit it inherited (0 when the soft limit could not be
    lowered below it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = hard != resource.RLIM_INFINITY and hard > 512
    if lowered:
        # The proxy inherits a low soft limit from this process, as from a default shell.
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        with proxy(sim.base_url, 1, max_connections="3", headers_timeout="30") as running:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            yield running, hard if lowered else 0
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_over_the_cap_are_refused_and_logged(capped: tuple[Proxy, int]) -> None:
    running, _ = capped
    held = [socket.create_connection(("127.0.0.1", port_of(running))) for _ in range(3)]
    try:
        extra = RawClient(port_of(running))
        status, body = extra.answer(timeout=10)
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"  # type: ignore[index]
    finally:
        for sock in held:
            sock.close()
    line = logged(running, "connection refused with 503")
    assert "MAX_CONNECTIONS" in line
    # Once the held connections are gone, callers are served again.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{running.url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the proxy did not serve again after the held connections closed")


def test_soft_open_files_limit_is_raised_at_start(capped: tuple[Proxy, int]) -> None:
    running, hard = capped
    if not hard:
        pytest.skip("needs a finite hard open-files limit above 512")
    with open(f"/proc/{running.process.pid}/limits", encoding="ascii") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(hard), str(hard)]


def raw_get(running: Proxy, path: str, key: str = KEY) -> tuple[int, dict[str, object]]:
    """GET with the path exactly as written (HTTP clients would remove its dot-segments)."""
    client = RawClient(port_of(running))
    client.send(
        f"GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {key}\r\n"
        "connection: close\r\n\r\n".encode()
    )
    return client.answer(timeout=10)


def raw_upgrade(running: Proxy, path: str, key: str = KEY) -> tuple[int, dict[str, object]]:
    client = RawClient(port_of(running))
    client.send(
        f"GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {key}\r\n"
        "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    return client.answer(timeout=10)


def test_dot_segments_cannot_reach_routes_the_preset_refuses(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.url + "/api/v1", xai_upstream="openrouter") as running:
        assert raw_get(running, "/api/v1/credits")[0] == 501
        for sneaky in ("/api/v1/models/../credits", "/api/v1/models/%2e%2e/credits"):
            status, body = raw_get(running, sneaky)
            assert status == 501, sneaky
            assert "/credits" in str(body)
        assert raw_get(running, "/api/v1/models/..%2fcredits")[0] == 400
        assert fresh_sim.stats()["requests"] == 0


def test_dot_segments_cannot_leave_the_api_prefix(fresh_sim: Simulator) -> None:
    with proxy(
        fresh_sim.url + "/v1/acct123/gw-main/grok/v1",
        xai_upstream="cloudflare",
        cloudflare_account_id="acct123",
        cloudflare_gateway_id="gw-main",
    ) as running:
        for sneaky in (
            "/api/v1/../../openai/chat/completions",
            "/api/v1/%2e%2e/%2E%2E/openai/chat/completions",
            "/v1/../../openai/chat/completions",
        ):
            status, body = raw_get(running, sneaky)
            assert status == 400, sneaky
            assert body["error"]["code"] == "invalid_path"  # type: ignore[index]
        # A WebSocket upgrade gets the same answer, not a bare 403.
        for sneaky in ("/v1/../../openai/realtime", "/api/v1/%2e%2e/%2E%2E/openai/realtime"):
            status, body = raw_upgrade(running, sneaky)
            assert status == 400, sneaky
            assert body["error"]["code"] == "invalid_path"  # type: ignore[index]
        assert fresh_sim.stats()["requests"] == 0
        # A dot-segment that stays inside is resolved, and the upstream sees the clean path.
        status, _ = raw_get(running, "/api/v1/files/../models")
        assert status == 200
        assert fresh_sim.last_request()["path"] == "/v1/acct123/gw-main/grok/v1/models"


class EchoingUpstream(BaseHTTPRequestHandler):
    """An upstream that answers every request 401, quoting the credentials it received."""

    def do_GET(self) -> None:
        received = self.headers.get("authorization", "")
        body = orjson.dumps(
            {"error": f"Incorrect API key provided: {received} (not sk-proj-stranger-key-0001)"}
        )
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads answers, not this server's log."""


@contextmanager
def echoing_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_upstream_errors_never_show_the_server_key() -> None:
    server_key = "xai-server-secret-0b8d4e6f13"
    with (
        echoing_upstream() as upstream,
        proxy(upstream, 1, grok_proxy_api_keys="team-key-1", xai_api_key=server_key) as running,
    ):
        response = httpx.get(
            f"{running.api}/models", headers={"authorization": "Bearer team-key-1"}
        )
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert message.startswith("Incorrect API key provided: Bearer [redacted]")
    assert server_key not in response.text
    assert "sk-proj-stranger-key-0001" not in response.text


@pytest.mark.parametrize(
    "env",
    [
        {"GROK_PROXY_API_KEYS": "team-key-secret-tail-1"},
        {
            "GROK_PROXY_API_KEYS": "team-key-secret-tail-1",
            "XAI_API_KEY": "xai-x",
            "XAI_CONNECT_TIMEOUT": "-1",
        },
        {"XAI_API_KEY": "xai-server-secret-tail-2", "XAI_READ_TIMEOUT": "soon"},
    ],
)
def test_start_up_errors_name_the_problem_but_no_secret(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = refused_start(env, tmp_path)
    assert result.returncode != 0
    assert "configuration error" in result.stderr
    assert "Traceback" not in result.stderr
    for secret in ("secret-tail", "xai-x"):
        assert secret not in result.stderr + result.stdout


def test_newlines_in_the_url_or_model_cannot_forge_log_lines(live: Proxy) -> None:
    forged = "2026-01-01 00:00:00,000 INFO grok_proxy.access [forged]"
    client = RawClient(port_of(live))
    client.send(
        f"GET /nope%0a{forged.replace(' ', '%20')} HTTP/1.1\r\nhost: p\r\nconnection: close\r\n\r\n".encode()
    )
    assert client.answer(timeout=10)[0] == 404
    body = {"model": f"grok-4\n{forged}", "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(
        f"{live.api}/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    deadline = time.monotonic() + 5
    while output_of(live.process).count("[forged]") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = output_of(live.process).splitlines()
    assert sum("[forged]" in line for line in lines) == 2
    assert not [line for line in lines if line.startswith(forged)]


def test_made_up_models_and_keys_cannot_inflate_metrics(fresh_sim: Simulator) -> None:
    with proxy(fresh_sim.base_url) as running:
        for index in range(30):
            body = {
                "model": f"{index}-" + "m" * 20_000,
                "messages": [{"role": "user", "content": "hi"}],
            }
            refused = httpx.post(
                f"{running.api}/chat/completions",
                json=body,
                headers={"authorization": "Bearer xai-invalid-made-up"},
            )
            assert refused.status_code == 400
        body = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            httpx.post(
                f"{running.api}/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {KEY}"},
            ).status_code
            == 200
        )
        text = httpx.get(f"{running.url}/metrics").text
    assert "mmmmmmmmmm" not in text
    assert len(text) < 100_000
    assert 'model="other",route="/api/v1/chat/completions",status="400"} 30.0' in text
    assert 'model="grok-4",route="/api/v1/chat/completions",status="200"} 1.0' in text


def ops_statuses(running: Proxy, headers: dict[str, str] | None = None) -> dict[str, int]:
    paths = ["/metrics", "/docs", "/openapi.json", "/health?upstream=1", "/v1/health?upstream=yes"]
    return {path: httpx.get(f"{running.url}{path}", headers=headers).status_code for path in paths}


def test_operational_routes_need_an_access_key_in_shared_deployments(fresh_sim: Simulator) -> None:
    with proxy(
        fresh_sim.base_url, grok_proxy_api_keys="team-key-1", xai_api_key="xai-server-key-1"
    ) as running:
        refused = ops_statuses(running)
        assert set(refused.values()) == {401}, refused
        answer = httpx.get(f"{running.url}/metrics")
        assert answer.json()["error"]["code"] == "ops_token_required"
        assert "Basic" in answer.headers["www-authenticate"]
        assert httpx.get(f"{running.url}/health").status_code == 200  # liveness stays open
        allowed = ops_statuses(running, {"authorization": "Bearer team-key-1"})
        assert set(allowed.values()) == {200}, allowed
        # The upstream was probed once for the two checks: answers are reused for 10 s.
        probes = [r for r in fresh_sim.requests() if r["path"].endswith("/models")]
        assert len(probes) == 1


def test_an_ops_token_replaces_access_keys_for_operational_routes(fresh_sim: Simulator) -> None:
    with proxy(
        fresh_sim.base_url,
        grok_proxy_api_keys="team-key-1",
        xai_api_key="xai-server-key-1",
        grok_proxy_ops_token="ops-token-1",
    ) as running:
        assert set(ops_statuses(running, {"authorization": "Bearer team-key-1"}).values()) == {401}
        assert set(ops_statuses(running, {"authorization": "Bearer ops-token-1"}).values()) == {200}
        basic = httpx.get(f"{running.url}/docs", auth=("prometheus", "ops-token-1"))
        assert basic.status_code == 200


def test_a_huge_model_name_makes_no_huge_log_line(live: Proxy) -> None:
    body = {"model": "giant-" + "g" * 1_000_000, "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(
        f"{live.api}/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    line = logged(live, "model=giant-")
    assert len(line) < 1000
