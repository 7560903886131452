"""A pytest plugin: an offline twin of xAI (the simulator, optionally behind the proxy) per session.

Installed with grok-proxy and registered as the `grok_proxy` pytest11 entry point, so a
test suite only asks for a fixture:

    def test_hello(grok_twin):
        client = openai.OpenAI(base_url=grok_twin.openai_base_url, api_key=grok_twin.api_key)

`grok_twin` is the simulator alone; `grok_twin_proxied` is grok-proxy in front of it. Both
start real processes on free loopback ports once per session. See docs/testing.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import pytest

HOST = "127.0.0.1"
# Any key works with the simulator except one containing "invalid" (xAI's 400).
API_KEY = "xai-grok-twin-test-key"
STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class GrokTwin:
    """Where a test's clients point, and a look inside the simulator."""

    simulator_url: str
    openai_base_url: str
    anthropic_base_url: str
    api_key: str = API_KEY
    # host:port for xai-sdk: Client(api_host=..., use_insecure_channel=True).
    xai_grpc_host: str | None = None
    proxy_url: str | None = None
    logs: dict[str, str] = field(default_factory=dict)

    def requests(self) -> list[dict[str, Any]]:
        """Every request the simulator received since the last reset (method, path, body...)."""
        found: list[dict[str, Any]] = orjson.loads(fetch(f"{self.simulator_url}/_sim/requests"))
        return found

    def reset(self) -> None:
        """Forget received requests, stored responses, files and counters."""
        fetch(f"{self.simulator_url}/_sim/reset", method="POST")


def fetch(url: str, method: str = "GET", timeout: float = 10.0) -> bytes:
    """The body of a loopback URL built here (the standard library: grok-proxy needs no httpx)."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - http://127.0.0.1 only
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(
    args: list[str], ready_url: str, log: IO[bytes], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m grok_proxy ARGS` until the block ends; waits until `ready_url` answers."""
    # The command is this interpreter running grok-proxy itself, never outside input.
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "grok_proxy", *args],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"grok-proxy {args[0]} exited with {process.returncode}")
            try:
                fetch(ready_url, timeout=1.0)
                break
            except urllib.error.HTTPError:
                break  # it answered, if not with 200: it is up
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{ready_url} did not answer in {STARTUP_SECONDS} s"
                    ) from None
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def simulator_twin() -> Iterator[GrokTwin]:
    """The simulator alone: clients talk to it as to api.x.ai."""
    port, grpc_port = free_port(), free_port()
    url = f"http://{HOST}:{port}"
    args = ["simulate", "--host", HOST, "--port", str(port), "--grpc-port", str(grpc_port)]
    with (
        tempfile.NamedTemporaryFile(prefix="grok-twin-sim-", suffix=".log") as log,
        running(args, f"{url}/_sim/stats", log),
    ):
        yield GrokTwin(
            simulator_url=url,
            openai_base_url=f"{url}/v1",
            anthropic_base_url=url,
            xai_grpc_host=f"{HOST}:{grpc_port}",
            logs={"simulator": log.name},
        )


@contextmanager
def proxied_twin(simulator: GrokTwin) -> Iterator[GrokTwin]:
    """grok-proxy in front of the simulator: clients talk to the proxy."""
    port, grpc_port = free_port(), free_port()
    url = f"http://{HOST}:{port}"
    args = ["serve", "--host", HOST, "--port", str(port)]
    env = {
        "XAI_BASE_URL": simulator.openai_base_url,
        # Its own free port: the default (8001) would be shared by every session.
        "GROK_PROXY_GRPC_PORT": str(grpc_port),
        "XAI_GRPC_URL": f"grpc://{simulator.xai_grpc_host}",
    }
    with (
        tempfile.NamedTemporaryFile(prefix="grok-twin-proxy-", suffix=".log") as log,
        running(args, f"{url}/health", log, env),
    ):
        yield GrokTwin(
            simulator_url=simulator.simulator_url,
            openai_base_url=f"{url}/api/v1",
            anthropic_base_url=f"{url}/api",
            xai_grpc_host=f"{HOST}:{grpc_port}",
            proxy_url=url,
            logs={**simulator.logs, "proxy": log.name},
        )


@pytest.fixture(scope="session")
def grok_twin() -> Iterator[GrokTwin]:
    """The xAI simulator for the whole session, on a free loopback port."""
    with simulator_twin() as twin:
        yield twin


@pytest.fixture(scope="session")
def grok_twin_proxied(grok_twin: GrokTwin) -> Iterator[GrokTwin]:
    """grok-proxy in front of the session's simulator; clients point at the proxy."""
    with proxied_twin(grok_twin) as twin:
        yield twin
