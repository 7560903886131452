"""The processes a benchmark runs: the simulator, grok-proxy, nginx, each pinned to its core.

Layout on a 2-core machine: the proxy under test (grok-proxy, nginx or LiteLLM) gets core 0
to itself; the simulator and every load generator share core 1.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
KEY = "xai-bench-key"
CORES = os.cpu_count() or 1
PROXY_CORE, LOAD_CORE = ("0", "1") if CORES >= 2 else ("0", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def pin_self_to_load_core() -> None:
    """Run this process (and what it starts unpinned) on the load core, off the proxy's."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(core) for core in LOAD_CORE.split(",")})


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, here and in every process started from here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(url)


@contextmanager
def process(
    command: list[str],
    ready: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(ready, timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def simulator(port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "grok_proxy", "simulate", "--host", HOST, "--port", str(port)]
    command += ["--grpc-port", "0"]  # HTTP only: a fixed gRPC port could be taken
    return process(pinned(LOAD_CORE, command), f"http://{HOST}:{port}/_sim/stats")


def proxy(
    port: int,
    upstream: str,
    workers: int = 1,
    log_level: str = "warning",
    checkout: Path | None = None,
    env: dict[str, str] | None = None,
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The proxy of this tree, or of another checkout (its own virtualenv) for an A/B."""
    python = sys.executable if checkout is None else str(checkout / ".venv" / "bin" / "python")
    command = [python, "-m", "grok_proxy", "serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    # Access lines off unless asked for (--log-level info): the table measures forwarding;
    # docs/benchmarks.md gives the cost of the access log separately.
    # No gRPC listener: a fixed port could be taken (by the other proxy of an A/B, say);
    # the variable, unlike the flag, is known to older revisions too.
    settings = {
        "XAI_BASE_URL": upstream,
        "LOG_LEVEL": log_level,
        "GROK_PROXY_GRPC_PORT": "0",
        **(env or {}),
    }
    # One worker gets a core to itself; several workers share the machine with the load.
    cores = PROXY_CORE if workers == 1 else ",".join(str(core) for core in range(CORES))
    return process(
        pinned(cores, command), f"http://{HOST}:{port}/health", settings, checkout, timeout=60
    )


@contextmanager
def checkout_of(revision: str) -> Iterator[Path]:
    """A temporary worktree of `revision` with its locked dependencies installed."""
    directory = Path(tempfile.mkdtemp(prefix="grok-proxy-baseline-"))
    run_tool(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory), revision])
    try:
        subprocess.run(["uv", "sync", "--frozen", "--quiet"], cwd=directory, check=True)
        yield directory
    finally:
        run_tool(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(directory)])


NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile {files};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  upstream simulator {{ server {host}:{upstream}; keepalive 256; }}
  server {{
    listen {host}:{port} backlog=4096;
    location / {{
      proxy_pass http://simulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 900s;
    }}
  }}
}}
"""


@contextmanager
def nginx(port: int, upstream: int) -> Iterator[int]:
    """nginx in front of the simulator; yields its master's pid (its worker is a child)."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=tmp,
                host=HOST,
                port=port,
                upstream=upstream,
                files=files,
                # Each caller holds two connections (its own and the upstream one).
                connections=max(1024, files - 64),
            )
        )
        command = pinned(PROXY_CORE, ["nginx", "-c", str(conf), "-p", tmp])
        with process(command, f"http://{HOST}:{port}/_sim/stats") as proc:
            yield proc.pid


def run_tool(command: list[str]) -> subprocess.CompletedProcess[str]:
    # `nginx -v` and `wrk -v` exit non-zero while printing their version.
    return subprocess.run(command, capture_output=True, text=True, check=False)
