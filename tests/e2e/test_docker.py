"""The image, built from the repository's Dockerfile and run the way the README says.

The engine and the base image come from tests/docker_engine.py; without an engine the
tests skip and say why. Containers use the host's network to reach the simulator, and
listen on 127.0.0.1 there (HOST), except where the image's own default is the point.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import KEY
from tests.docker_engine import Engine, Unavailable, build, engine
from tests.processes import Simulator, free_port, paced_stream

# The first test also builds the image (about a minute; debootstrap adds one more the
# very first time on a machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

AUTH = {"authorization": f"Bearer {KEY}"}
SHUTTING_DOWN = b"grok-proxy is shutting down"


@pytest.fixture(scope="module")
def docker() -> Iterator[Engine]:
    try:
        with engine() as running:
            yield running
    except Unavailable as reason:
        pytest.skip(f"no Docker engine: {reason}")


@pytest.fixture(scope="module")
def image(docker: Engine) -> str:
    try:
        return build(docker, "grok-proxy:e2e")
    except Unavailable as reason:
        pytest.skip(str(reason))


@contextmanager
def container(docker: Engine, image: str, label: str, *options: str) -> Iterator[str]:
    """`docker run -d` with these options (the command, if any, comes after `--`)."""
    name = f"grok-proxy-e2e-{os.getpid()}-{label}"
    run_options, command = list(options), []
    if "--" in run_options:
        split = run_options.index("--")
        run_options, command = run_options[:split], run_options[split + 1 :]
    # The image's healthcheck, probed every second instead of every 15 s to keep CI short.
    docker.run(
        "run", "-d", "--name", name, "--health-interval", "1s", *run_options, image, *command
    )
    try:
        yield name
    finally:
        docker.run("rm", "--force", name, check=False)


def on_host_network(port: int, sim: Simulator) -> list[str]:
    return [
        "--network",
        "host",
        "-e",
        "HOST=127.0.0.1",
        "-e",
        f"PORT={port}",
        "-e",
        f"XAI_BASE_URL={sim.base_url}",
    ]


def wait_until_serving(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_image_serves_chat_and_paced_streams_as_non_root(
    docker: Engine, image: str, sim: Simulator
) -> None:
    port = free_port()
    # HTTP_PROXY as Docker injects it when the daemon has one (this one points nowhere): the
    # healthcheck never uses it, and the proxy is told to go direct with XAI_PROXY_URL.
    options = [
        *on_host_network(port, sim),
        "-e",
        "HTTP_PROXY=http://127.0.0.1:9",
        "-e",
        "XAI_PROXY_URL=direct",
    ]
    with container(docker, image, "serve", *options) as name:
        # Healthy means the image's HEALTHCHECK found the port given by PORT.
        docker.wait_for(name, "healthy", timeout=60)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health").json()["status"] == "healthy"

        body = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/api/v1/chat/completions", json=body, headers=AUTH)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]

        lines, arrivals = paced_stream(f"{url}/api/v1", KEY)
        assert "data: [DONE]" in lines
        assert len(arrivals) == 5
        assert arrivals[-1] - arrivals[0] >= 0.45  # relayed as paced, not bunched

        assert docker.run("exec", name, "id", "-u") == "10001"
        assert docker.run("exec", name, "id", "-g") == "10001"
        logs = docker.logs(name)
    assert f"127.0.0.1:{port}" in logs


def test_default_command_with_flags_listens_on_all_interfaces_and_turns_healthy(
    docker: Engine, image: str
) -> None:
    # The case: a command given in full, without --host. It must still listen on
    # every interface (reachable through -p) and be probed on the port it was given.
    command = ["--", "grok-proxy", "serve", "--workers", "2", "--port", "9001"]
    with container(docker, image, "flags", "--network", "none", *command) as name:
        docker.wait_for(name, "healthy", timeout=60)
        logs = docker.logs(name)
    assert "0.0.0.0:9001" in logs


def test_docker_stop_ends_open_streams_with_an_error_event_and_exits_0(
    docker: Engine, image: str, fresh_sim: Simulator
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    received: list[bytes] = []

    def stream() -> None:
        long = {
            "model": "grok-4@chunks=600,pace=50",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        with httpx.stream(
            "POST", f"{url}/api/v1/chat/completions", json=long, headers=AUTH, timeout=30
        ) as response:
            received.append(response.read())

    with container(docker, image, "stop", *on_host_network(port, fresh_sim)) as name:
        wait_until_serving(url)
        reader = threading.Thread(target=stream)
        reader.start()
        fresh_sim.wait_for_stat("streams_started", 1, timeout=10)
        # Docker's default: SIGTERM, then SIGKILL after 10 s.
        docker.run("stop", name, timeout=60)
        reader.join(timeout=30)
        state = docker.inspect(name)["State"]
        logs = docker.logs(name)
    assert state["ExitCode"] == 0, (state, logs)
    assert not state["OOMKilled"]
    assert received, "the stream never ended"
    body = received[0]
    assert b"tok0" in body
    assert b"[DONE]" not in body
    assert SHUTTING_DOWN in body.rstrip().split(b"\n\n")[-1]
    assert "draining" in logs
