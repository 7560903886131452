"""Start the real simulator and proxy as processes on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll `url` until it answers; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{output_of(process)}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@contextmanager
def running(
    args: list[str],
    ready_url: str,
    env: Mapping[str, str | None] | None = None,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """The grok_proxy module as a process; `env` adds variables (None removes one)."""
    environment = {**os.environ}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    # Output goes to a file, not a pipe: nobody reads a pipe while tests run, and once its
    # 64 KiB buffer is full every log write would block the process.
    with tempfile.NamedTemporaryFile(prefix="grok-proxy-", suffix=".log") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "grok_proxy", *args],
            cwd=cwd,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        LOGS[process.pid] = log.name
        try:
            wait_until_up(ready_url, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


LOGS: dict[int, str] = {}


def output_of(process: subprocess.Popen[bytes]) -> str:
    """Everything the process has written so far."""
    with open(LOGS[process.pid], encoding="utf-8", errors="replace") as log:
        return log.read()


@dataclass
class Simulator:
    """A running simulator and the ways tests look inside it."""

    url: str
    # host:port of its gRPC API (xai-sdk's protocol)
    grpc_target: str = ""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def requests(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/_sim/requests").json()
        return data

    def last_request(self) -> dict[str, Any]:
        return self.requests()[-1]

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = httpx.get(f"{self.url}/_sim/stats").json()
        return data

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sim/reset")

    def wait_for_stat(self, name: str, value: int, timeout: float) -> dict[str, int]:
        """The stats once stats[name] reached value; fails after `timeout`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            stats = self.stats()
            if stats.get(name, 0) >= value:
                return stats
            time.sleep(0.02)
        raise AssertionError(f"{name} did not reach {value} in {timeout} s: {self.stats()}")


@contextmanager
def simulator() -> Iterator[Simulator]:
    port, grpc_port = free_port(), free_port()
    url = f"http://{HOST}:{port}"
    args = ["simulate", "--host", HOST, "--port", str(port), "--grpc-port", str(grpc_port)]
    with running(args, f"{url}/_sim/stats"):
        yield Simulator(url, f"{HOST}:{grpc_port}")


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    # host:port of its gRPC listener, when the test turned it on (grok_proxy_grpc_port)
    grpc_target: str = ""

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"


def refused_start(
    env: Mapping[str, str], cwd: str | os.PathLike[str]
) -> subprocess.CompletedProcess[str]:
    """The proxy started with `env` added, in `cwd` (no .env file), expected to refuse."""
    return subprocess.run(
        [sys.executable, "-m", "grok_proxy", "--port", str(free_port())],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextmanager
def proxy(upstream: str, workers: int = 1, **settings: str) -> Iterator[Proxy]:
    """The real proxy in front of `upstream`; `settings` are extra environment variables."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    # gRPC off unless a test asks for it: its default port would be shared by every proxy.
    env = {
        "XAI_BASE_URL": upstream,
        "GROK_PROXY_GRPC_PORT": "0",
        **{k.upper(): v for k, v in settings.items()},
    }
    args = ["serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    grpc_port = env["GROK_PROXY_GRPC_PORT"]
    with running(args, f"{url}/health", env) as process:
        yield Proxy(url, process, f"{HOST}:{grpc_port}" if grpc_port != "0" else "")


def open_fds(pid: int) -> int:
    """File descriptors a process holds (sockets included): the leak gauge."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(measure: Callable[[], int], at_most: int, timeout: float = 5.0) -> int:
    """Poll `measure` until it is at most `at_most` (or the timeout); return the last value."""
    deadline = time.monotonic() + timeout
    value = measure()
    while value > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value


def paced_stream(api: str, key: str) -> tuple[list[str], list[float]]:
    """A chat stream of 5 chunks paced 150 ms apart: its lines, and when each content arrived."""
    body = {
        "model": "grok-4@chunks=5,pace=150",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    lines: list[str] = []
    arrivals: list[float] = []
    started = time.monotonic()
    headers = {"authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{api}/chat/completions", json=body, headers=headers) as response:
        for line in response.iter_lines():
            lines.append(line)
            if '"content"' in line:
                arrivals.append(time.monotonic() - started)
    return lines, arrivals
