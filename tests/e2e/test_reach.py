"""Where real users are: behind a forward proxy, over TLS, with xAI's largest payloads.

Every test runs the real proxy process. Upstreams are the simulator, an https server
that offers HTTP/2 and HTTP/1.1 (tests.tls_upstream), or a scripted server whose bytes a test chooses
(tests.scripted); the forward proxy is tinyproxy from Debian.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import KEY
from tests.e2e.test_grpc import REPLY, grpc_proxy
from tests.e2e.test_grpc import chat as grpc_chat
from tests.processes import Simulator, free_port, proxy, refused_start, running
from tests.scripted import LAST_CHUNK, RESET, STALL, Route, Step, chunk, head, scripted
from tests.tls_upstream import tls_upstream

AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]
MB = 1024 * 1024


def chat(api: str, stream: bool = False, **fields: object) -> httpx.Response:
    body = {"model": "grok-4", "messages": MESSAGES, "stream": stream, **fields}
    return httpx.post(f"{api}/chat/completions", json=body, headers=AUTH, timeout=60)


# --- a forward proxy between grok-proxy and the upstream --------------------------------


@contextmanager
def tinyproxy() -> Iterator[tuple[str, Path]]:
    """tinyproxy on a free port; yields its URL and its log file."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it)")
    directory = Path(tempfile.mkdtemp(prefix="tinyproxy-"))
    directory.chmod(0o777)  # it drops to an unprivileged user when started as root
    log = directory / "tinyproxy.log"
    port = free_port()
    config = directory / "tinyproxy.conf"
    config.write_text(
        f'Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile "{log}"\nLogLevel Info\n'
        "MaxClients 100\nAllow 127.0.0.1\n"
    )
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def logged(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def test_http_proxy_from_the_environment_carries_every_request(sim: Simulator) -> None:
    port = sim.url.rsplit(":", 1)[1]
    with tinyproxy() as (forward, log):
        with proxy(sim.base_url, http_proxy=forward, no_proxy="") as running:
            assert chat(running.api).status_code == 200
            streamed = chat(running.api, stream=True)
        assert streamed.content.endswith(b"data: [DONE]\n\n")
        requests = [line for line in logged(log).splitlines() if f"127.0.0.1:{port}/v1" in line]
        assert len(requests) == 2, logged(log)


def test_no_proxy_bypasses_the_forward_proxy(sim: Simulator) -> None:
    with tinyproxy() as (forward, log):
        with proxy(sim.base_url, http_proxy=forward, no_proxy="127.0.0.1") as running:
            assert chat(running.api).status_code == 200
        assert "/v1/chat/completions" not in logged(log)


def test_https_upstream_is_tunnelled_through_the_proxy_setting() -> None:
    with tls_upstream() as upstream, tinyproxy() as (forward, log):
        with proxy(
            upstream.base_url, xai_proxy_url=forward, xai_ca_bundle=upstream.ca_file
        ) as running:
            response = chat(running.api)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hi"
        port = upstream.base_url.split(":")[2].split("/")[0]
        assert f"CONNECT localhost:{port}" in logged(log)


# --- TLS --------------------------------------------------------------------------------


def test_https_upstream_is_spoken_to_over_http1_even_when_it_offers_http2() -> None:
    # HTTP/1.1 upstream, as nginx does: docs/upstream-client.md says why not HTTP/2.
    with tls_upstream() as upstream:
        with proxy(upstream.base_url, xai_ca_bundle=upstream.ca_file) as running:
            plain = chat(running.api)
            streamed = chat(running.api, stream=True)
        assert plain.status_code == 200
        assert streamed.content.count(b"data: ") == 4
        assert streamed.content.endswith(b"data: [DONE]\n\n")
        assert upstream.versions() == ["1.1", "1.1"]


def test_an_untrusted_upstream_certificate_is_502_naming_it() -> None:
    with tls_upstream() as upstream, proxy(upstream.base_url) as running:
        response = chat(running.api)
    assert response.status_code == 502
    assert "certificate verify failed" in response.json()["error"]["message"]


def test_ssl_cert_file_in_a_dotenv_file_is_honoured(tmp_path: Path) -> None:
    # The TLS layer reads settings, not only the process environment: `.env` counts too.
    with tls_upstream() as upstream:
        (tmp_path / ".env").write_text(f"SSL_CERT_FILE={upstream.ca_file}\n")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = ["serve", "--port", str(port)]
        env: dict[str, str | None] = {"XAI_BASE_URL": upstream.base_url, "SSL_CERT_FILE": None}
        with running(args, f"{url}/health", env, cwd=str(tmp_path)):
            assert chat(f"{url}/api/v1").status_code == 200


# --- xAI's documented payload limits ----------------------------------------------------


def rss_peak_growth_mb(pid: int, action: object) -> float:
    """How far the process's resident memory rose above where it stood, while `action` ran."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
    before = _status_kb(pid, "VmRSS")
    assert callable(action)
    action()
    return (_status_kb(pid, "VmHWM") - before) / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def png(size: int, seed: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + hashlib.shake_256(bytes([seed])).digest(size - 8)


def test_a_chat_request_with_two_20_mib_images_passes_byte_identical() -> None:
    images = [
        {
            "type": "image_url",
            "image_url": {
                "url": "data:image/png;base64," + base64.b64encode(png(20 * MB, n)).decode()
            },
        }
        for n in (1, 2)
    ]
    body = orjson.dumps(
        {
            "model": "grok-4",
            "messages": [{"role": "user", "content": [*images, {"type": "text", "text": "?"}]}],
        }
    )
    assert len(body) > 53 * MB
    answer = orjson.dumps({"id": "c", "object": "chat.completion", "choices": []})
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = Route(
            [
                head(200, {"content-type": "application/json", "content-length": str(len(answer))}),
                answer,
            ]
        )
        with proxy(upstream.base_url) as running:
            response = httpx.post(
                f"{running.api}/chat/completions",
                content=body,
                headers={**AUTH, "content-type": "application/json"},
                timeout=120,
            )
    assert response.status_code == 200
    assert upstream.seen[-1].sha256 == hashlib.sha256(body).hexdigest()


# Shared: the caller is a team member (GROK_PROXY_API_KEYS), whose gate must not hold it.
@pytest.mark.parametrize("shared", [False, True], ids=["own-key", "team-member"])
def test_a_48_mb_upload_streams_through_with_flat_memory(shared: bool, tmp_path: Path) -> None:
    team: dict[str, str] = (
        {
            "grok_proxy_api_keys": KEY,
            "xai_api_key": "xai-server",
            "grok_proxy_data_dir": str(tmp_path),
        }
        if shared
        else {}
    )
    upload = png(48 * 1000 * 1000, 3)
    boundary = "grokproxyboundary"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + upload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answer = b'{"id":"file-1","object":"file"}'
    with scripted() as upstream:
        upstream.routes["/v1/files"] = Route(
            [
                head(200, {"content-type": "application/json", "content-length": str(len(answer))}),
                answer,
            ]
        )
        with proxy(upstream.base_url, 1, **team) as running:
            results: list[httpx.Response] = []

            def send() -> None:
                results.append(
                    httpx.post(
                        f"{running.api}/files",
                        content=multipart,
                        headers={
                            **AUTH,
                            "content-type": f"multipart/form-data; boundary={boundary}",
                        },
                        timeout=120,
                    )
                )

            growth = rss_peak_growth_mb(running.process.pid, send)
    assert results[0].status_code == 200
    assert results[0].json() == {"id": "file-1", "object": "file"}
    assert upstream.seen[-1].sha256 == hashlib.sha256(multipart).hexdigest()
    assert growth < 16, f"RSS grew by {growth:.1f} MB"


def test_a_48_mb_download_streams_through_with_flat_memory() -> None:
    content = png(48 * 1000 * 1000, 4)
    with scripted() as upstream:
        upstream.routes["/v1/files/file-1/content"] = Route(
            [
                head(
                    200,
                    {
                        "content-type": "application/octet-stream",
                        "content-length": str(len(content)),
                    },
                ),
                content,
            ]
        )
        with proxy(upstream.base_url) as running:
            digest = hashlib.sha256()

            def download() -> None:
                with httpx.stream(
                    "GET", f"{running.api}/files/file-1/content", headers=AUTH, timeout=120
                ) as r:
                    assert r.status_code == 200
                    assert r.headers["content-length"] == str(len(content))
                    for piece in r.iter_raw():
                        digest.update(piece)

            growth = rss_peak_growth_mb(running.process.pid, download)
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()
    assert growth < 16, f"RSS grew by {growth:.1f} MB"


def raw_exchange(port: int, head_bytes: bytes, body: Iterator[bytes]) -> bytes:
    """Send a request head and then body pieces on a socket while reading the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head_bytes)

    def feed() -> None:
        try:
            for piece in body:
                sock.sendall(piece)
        except OSError:
            pass  # the proxy answered and closed: exactly what is being tested

    sender = threading.Thread(target=feed, daemon=True)
    sender.start()
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 60:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    return answer


def test_an_upload_over_the_limit_gets_the_413_envelope_while_still_sending() -> None:
    with scripted() as upstream, proxy(upstream.base_url, max_body_bytes=str(MB)) as running:
        port = int(running.url.rsplit(":", 1)[1])
        request_head = (
            f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        answer = raw_exchange(port, request_head, (chunk(b"x" * 65536) for _ in range(64)))
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b'"code":"request_too_large"' in body
    assert b"MAX_BODY_BYTES" in body


# --- framing and honesty ----------------------------------------------------------------


SSE_HEAD = head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})


def sse_route(*pieces: bytes | float | str) -> Route:
    steps: list[bytes | float | str] = [SSE_HEAD]
    for piece in pieces:
        steps.append(chunk(piece) if isinstance(piece, bytes) else piece)
    if not any(piece in (RESET, STALL) for piece in pieces):
        steps.append(LAST_CHUNK)
    return Route(steps)


def event(payload: Mapping[str, object], end: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(payload) + end + end


DELTA = {
    "id": "c",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "data: [DONE]"}}],
}
USAGE = {
    "id": "c",
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
}


def streamed_through(route: Route) -> bytes:
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = route
        with proxy(upstream.base_url) as running:
            return chat(running.api, stream=True).content


def test_a_crlf_framed_stream_with_usage_is_relayed_byte_exact() -> None:
    events = event(DELTA, b"\r\n") + event(USAGE, b"\r\n") + b"data: [DONE]\r\n\r\n"
    assert streamed_through(sse_route(events)) == events


def test_events_split_mid_line_across_reads_are_relayed_byte_exact() -> None:
    events = event(DELTA) + b": a comment\n\n" + event(USAGE) + b"data: [DONE]\n\n"
    pieces: list[bytes | float] = []
    for start in range(0, len(events), 7):
        pieces += [events[start : start + 7], 0.002]
    assert streamed_through(sse_route(*pieces)) == events


def test_done_quoted_in_content_does_not_make_a_truncated_stream_complete() -> None:
    relayed = streamed_through(sse_route(event(DELTA)))
    assert relayed.startswith(event(DELTA))
    assert b"ended the stream before it was complete" in relayed
    assert not relayed.endswith(b"data: [DONE]\n\n")


def test_a_stream_reset_midway_ends_with_an_error_event() -> None:
    relayed = streamed_through(sse_route(event(DELTA), RESET))
    assert relayed.startswith(event(DELTA))
    assert b"Stream interrupted: The upstream connection was lost" in relayed


def test_a_plain_body_cut_short_is_a_502_not_a_success() -> None:
    answer = b'{"id":"c","object":"chat.completion","choices":[]}'
    route = Route(
        [head(200, {"content-type": "application/json", "content-length": "500"}), answer, RESET]
    )
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = route
        with proxy(upstream.base_url) as running:
            response = chat(running.api)
    assert response.status_code == 502
    assert "connection was lost" in response.json()["error"]["message"]


def test_a_compressed_answer_arrives_with_its_content_encoding() -> None:
    original = b'{"object":"list","data":[{"id":"grok-4"}]}'
    packed = gzip.compress(original)
    route = Route(
        [
            head(
                200,
                {
                    "content-type": "application/json",
                    "content-encoding": "gzip",
                    "content-length": str(len(packed)),
                },
            ),
            packed,
        ]
    )
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = route
        upstream.routes["/v1/models"] = route
        with proxy(upstream.base_url) as running:
            for response in (chat(running.api), httpx.get(f"{running.api}/models", headers=AUTH)):
                assert response.status_code == 200
                assert response.headers["content-encoding"] == "gzip"
                assert response.json() == orjson.loads(original)  # httpx decodes it
        assert all(seen.headers["accept-encoding"] == "identity" for seen in upstream.seen)


def test_an_upstream_that_stops_taking_the_body_times_out() -> None:
    with scripted() as upstream:
        upstream.routes["/v1/files"] = Route([STALL], ignore_body=True)
        with proxy(upstream.base_url, xai_write_timeout="1") as running:
            port = int(running.url.rsplit(":", 1)[1])
            request_head = (
                f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {64 * MB}\r\n\r\n"
            ).encode()
            started = time.monotonic()
            answer = raw_exchange(port, request_head, (b"x" * MB for _ in range(64)))
            elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 504 ")
    assert b"took none of the request body for 1 seconds" in answer
    assert elapsed < 30


def test_an_early_answer_wins_over_the_body_still_being_sent() -> None:
    # xAI answers 413 (or 401) as soon as it knows, and closes while the upload goes on.
    refusal = b'{"code":"Client specified an invalid argument","error":"File too large"}'
    early: list[Step] = [
        head(
            413,
            {
                "content-type": "application/json",
                "content-length": str(len(refusal)),
                "connection": "close",
            },
        ),
        refusal,
        0.5,
        RESET,
    ]
    with scripted() as upstream:
        upstream.routes["/v1/files"] = Route(early, ignore_body=True)
        with proxy(upstream.base_url) as running:
            port = int(running.url.rsplit(":", 1)[1])
            request_head = (
                f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {32 * MB}\r\n\r\n"
            ).encode()
            answer = raw_exchange(port, request_head, (b"x" * MB for _ in range(32)))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"File too large" in answer


# --- a hostile or broken upstream -------------------------------------------------------


def test_two_answers_in_one_read_only_the_first_counts() -> None:
    first = b'{"id":"first","object":"chat.completion","choices":[]}'
    second = b'{"id":"second"}'
    both = (
        head(200, {"content-type": "application/json", "content-length": str(len(first))}) + first
        + head(500, {"content-type": "application/json", "content-length": str(len(second)), "x-ratelimit-remaining-requests": "0"}) + second
    )  # fmt: skip
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = Route([both])
        with proxy(upstream.base_url) as running:
            response = chat(running.api)
    assert response.status_code == 200
    assert response.json()["id"] == "first"
    assert "x-ratelimit-remaining-requests" not in response.headers


def test_endless_upstream_headers_are_refused_with_502() -> None:
    flood = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"y" * 1000 + b"\r\n"
    steps: list[Step] = [flood] * 2000
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = Route([*steps, RESET])
        with proxy(upstream.base_url) as running:
            response = chat(running.api)
            health = httpx.get(f"{running.url}/health")
    assert response.status_code == 502
    assert health.status_code == 200


def test_direct_ignores_the_environments_proxy(sim: Simulator) -> None:
    # A proxy variable that points nowhere, as a container may inherit: `direct` wins.
    with proxy(
        sim.base_url, http_proxy="http://127.0.0.1:9", no_proxy="", xai_proxy_url="direct"
    ) as running:
        assert chat(running.api).status_code == 200


# --- one forward proxy rule for HTTP, WebSocket and gRPC (upstream.py) --------------------


def test_all_proxy_carries_websocket_sessions_as_it_carries_http(sim: Simulator) -> None:
    # ALL_PROXY alone, as a container may have it: websockets' own reading skipped it.
    port = sim.url.rsplit(":", 1)[1]
    with tinyproxy() as (forward, log):
        with proxy(sim.base_url, all_proxy=forward, no_proxy="") as running:
            assert chat(running.api).status_code == 200
            url = f"ws{running.url.removeprefix('http')}/v1/realtime?model=grok-voice-latest"
            with ws_connect(url, additional_headers=AUTH, open_timeout=10) as session:
                assert orjson.loads(session.recv(timeout=10))["type"] == "session.created"
        seen = logged(log)
    assert f"127.0.0.1:{port}/v1/chat/completions" in seen, seen
    assert f"CONNECT 127.0.0.1:{port}" in seen, seen  # the WebSocket session's tunnel


def test_grpc_goes_through_xai_proxy_url_as_http_does(sim: Simulator) -> None:
    grpc_port = sim.grpc_target.rsplit(":", 1)[1]
    with tinyproxy() as (forward, log):
        with grpc_proxy(sim, xai_proxy_url=forward, no_proxy="") as running:
            assert grpc_chat(running.grpc_target, "grok-4") == REPLY
        seen = logged(log)
    assert f"CONNECT 127.0.0.1:{grpc_port}" in seen, seen


def test_direct_ignores_the_environments_proxy_on_grpc_too(sim: Simulator) -> None:
    # grpc reads http_proxy itself when nobody tells it otherwise.
    with grpc_proxy(
        sim, http_proxy="http://127.0.0.1:9", no_proxy="", xai_proxy_url="direct"
    ) as running:
        assert grpc_chat(running.grpc_target, "grok-4") == REPLY


def test_a_ca_bundle_with_text_beside_its_certificates_is_trusted(tmp_path: Path) -> None:
    # Bundles exported from a keychain carry notes ("Bag Attributes", friendly names) in any
    # language beside the PEM blocks; the WebSocket relay read them, HTTP refused to start.
    with tls_upstream() as upstream:
        bundle = tmp_path / "company-ca.pem"
        notes = "Bag Attributes\n    friendlyName: Zertifizierungsstelle für Tests\n"
        bundle.write_bytes(notes.encode() + Path(upstream.ca_file).read_bytes())
        with proxy(upstream.base_url, xai_ca_bundle=str(bundle)) as running:
            response = chat(running.api)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (
            {"XAI_PROXY_URL": "socks5://me:pw-secret@proxy.corp:1080"},
            "the forward proxy socks5://proxy.corp is not supported",
        ),
        (
            {"XAI_PROXY_URL": "https://me:pw-secret@proxy.corp:3129", "NO_PROXY": ""},
            "gRPC cannot use the forward proxy https://proxy.corp:3129",
        ),
    ],
    ids=["socks", "https-proxy-for-grpc"],
)
def test_a_proxy_that_cannot_work_stops_the_start_with_one_line(
    env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    # grpc would quietly go direct past an https:// proxy: refused rather than bypassed.
    result = refused_start({"GROK_PROXY_GRPC_PORT": str(free_port()), **env}, tmp_path)
    assert result.returncode != 0
    assert f"grok-proxy: configuration error: {reason}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "pw-secret" not in result.stderr + result.stdout
