"""A Docker engine for the image tests: the running one, or a private dockerd started here.

On machines without Docker Hub the base image is assembled from Debian's packages by
deploy/docker/base-image.sh (cached, so only the first run pays for debootstrap).
Every helper says why it cannot go on, so the tests skip with a reason instead of failing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
LOCAL_BASE = "grok-proxy-base:bookworm"


class Unavailable(Exception):
    """No engine, or no base image: the reason to skip."""


@dataclass
class Engine:
    """The `docker` command bound to one engine."""

    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        result = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout.strip()

    def logs(self, name: str) -> str:
        """What the container wrote, stdout and stderr (where its log lines go)."""
        result = subprocess.run(
            ["docker", "logs", name], env=self.env, capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.run("inspect", name))
        return data[0]

    def has_image(self, tag: str) -> bool:
        found = subprocess.run(
            ["docker", "image", "inspect", tag], env=self.env, capture_output=True, check=False
        )
        return found.returncode == 0

    def wait_for(self, name: str, health: str, timeout: float) -> None:
        """Until the container's health status is `health`; fails with its log otherwise."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.inspect(name)["State"]
            if state.get("Health", {}).get("Status") == health:
                return
            if not state["Running"]:
                break
            time.sleep(0.2)
        logs = self.logs(name)
        raise AssertionError(f"{name} did not turn {health}: {state}\n{logs}")


def _answers(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env=env,
        capture_output=True,
        timeout=20,
        check=False,
    )
    return result.returncode == 0


@contextmanager
def engine() -> Iterator[Engine]:
    """The engine `docker` already talks to, else a dockerd of our own (root only)."""
    if shutil.which("docker") is None:
        raise Unavailable("no docker client (.ci/run installs docker.io)")
    env = dict(os.environ)
    if _answers(env):
        yield Engine(env)
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        raise Unavailable("no Docker engine answers, and dockerd cannot be started (needs root)")
    with (
        tempfile.TemporaryDirectory(prefix="grok-proxy-dockerd-") as state,
        open(f"{state}/dockerd.log", "wb") as log,
    ):
        env["DOCKER_HOST"] = f"unix://{state}/docker.sock"
        # No bridge and no iptables: containers here use the host's network, and the
        # machine may not let a container runtime rewrite its firewall.
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--host={env['DOCKER_HOST']}",
                f"--pidfile={state}/docker.pid",
                f"--exec-root={state}/exec",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while not _answers(env):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    said = Path(f"{state}/dockerd.log").read_text(errors="replace")[-2000:]
                    raise Unavailable(f"dockerd did not start: {said}")
                time.sleep(0.2)
            yield Engine(env)
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            # dockerd leaves its host network namespace mounted in the exec root.
            subprocess.run(
                ["umount", f"{state}/exec/netns/default"], capture_output=True, check=False
            )


def base_image(docker: Engine) -> str:
    """DOCKER_BASE_IMAGE if given, else the locally assembled Debian bookworm + Python 3.11."""
    given = os.environ.get("DOCKER_BASE_IMAGE")
    if given:
        return given
    if not docker.has_image(LOCAL_BASE):
        if shutil.which("debootstrap") is None:
            raise Unavailable(
                "no base image: install debootstrap (.ci/run does) or set DOCKER_BASE_IMAGE"
            )
        result = subprocess.run(
            [str(ROOT / "deploy" / "docker" / "base-image.sh"), LOCAL_BASE],
            env=docker.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise Unavailable(f"the base image could not be assembled: {result.stderr[-2000:]}")
    return LOCAL_BASE


def build(docker: Engine, tag: str) -> str:
    """The repository's Dockerfile, unchanged, built with the base image as its build argument."""
    base = base_image(docker)
    previous = docker.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    # Host networking: the build reaches PyPI the way this machine does (no bridge here).
    docker.run(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        tag,
        str(ROOT),
        timeout=900,
    )
    # The image this build replaced would otherwise stay on disk after every code change.
    if previous.startswith("sha256:") and previous != docker.run(
        "image", "inspect", "--format", "{{.Id}}", tag
    ):
        docker.run("rmi", previous, check=False)
    return tag
