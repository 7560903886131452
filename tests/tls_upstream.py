"""An https upstream speaking HTTP/2 or HTTP/1.1 (hypercorn, a trustme CA), as xAI does.

`uv run hypercorn tests.tls_upstream:app` serves a minimal chat completion, plain and
streamed, and `GET /_seen` lists the HTTP version of every request it received, so a test
can tell what the proxy negotiated.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trustme

SEEN: list[str] = []

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "grok-4", "choices": []}
ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "model": "grok-4",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/_seen":
        await _answer(send, 200, "application/json", json.dumps(SEEN).encode())
        return
    SEEN.append(scope["http_version"])
    if json.loads(body or b"{}").get("stream"):
        events = b"".join(b"data: " + json.dumps(CHUNK).encode() + b"\n\n" for _ in range(3))
        await _answer(send, 200, "text/event-stream", events + b"data: [DONE]\n\n")
    else:
        await _answer(send, 200, "application/json", json.dumps(ANSWER).encode())


async def _answer(send: Any, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class TlsUpstream:
    base_url: str
    ca_file: str

    def versions(self) -> list[str]:
        # The test client trusts the same CA the proxy is told about.
        data: list[str] = httpx.get(
            self.base_url.removesuffix("/v1") + "/_seen", verify=self._ctx()
        ).json()
        return data

    def _ctx(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=self.ca_file)


@contextmanager
def tls_upstream() -> Iterator[TlsUpstream]:
    """hypercorn on a free loopback port with a certificate for `localhost` from a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    with tempfile.TemporaryDirectory() as directory:
        server_pem = Path(directory, "server.pem")
        ca_pem = Path(directory, "ca.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
        ca.cert_pem.write_to_path(str(ca_pem))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        process = subprocess.Popen(
            [
                sys.executable, "-m", "hypercorn", "--certfile", str(server_pem),
                "--keyfile", str(server_pem), "--bind", f"127.0.0.1:{port}",
                "tests.tls_upstream:app",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        upstream = TlsUpstream(f"https://localhost:{port}/v1", str(ca_pem))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    upstream.versions()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield upstream
        finally:
            process.terminate()
            process.wait(10)
