"""The deployment files: the Dockerfile lints clean, the manifests hold what operators rely
on, and the repository's nginx config spreads load over two real proxies and passes
streams through unbuffered."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, proxy, wait_until_up

ROOT = Path(__file__).parents[2]
AUTH = {"authorization": f"Bearer {KEY}"}


def test_dockerfile_lints_clean_and_runs_unprivileged() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --locked --no-dev" in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert '"--host", "0.0.0.0", "--port", "8000"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)


def test_kubernetes_manifests() -> None:
    docs = {
        d["kind"]: d
        for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/grok-proxy.yaml").read_text())
    }
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    grace = int(next(e["value"] for e in container["env"] if e["name"] == "SHUTDOWN_GRACE_SECONDS"))
    assert pod["terminationGracePeriodSeconds"] > grace + 5  # preStop pause + drain
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "grok-proxy"
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    assert compose["services"]["grok-proxy"]["deploy"]["replicas"] >= 2
    assert "nginx.conf" in compose["services"]["nginx"]["volumes"][0]


@contextmanager
def nginx_in_front_of(
    upstreams: list[str], grpc_upstreams: list[str] | None = None, grpc_port: int = 0
) -> Iterator[str]:
    """The repository's deploy/nginx.conf, with local upstreams and a free local port."""
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "\n".join(f"    server {u};" for u in upstreams)
    conf = re.sub(r"^\s*server grok-proxy:8000[^\n]*$", servers, conf, flags=re.MULTILINE)
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    # The gRPC block: its own upstreams and port (unused placeholders when not asked for).
    grpc_servers = "\n".join(f"    server {u};" for u in grpc_upstreams or upstreams)
    conf = re.sub(r"^\s*server grok-proxy:8001[^\n]*$", grpc_servers, conf, flags=re.MULTILINE)
    conf = conf.replace("listen 8001 ", f"listen 127.0.0.1:{grpc_port or free_port()} ")
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    with tempfile.TemporaryDirectory() as tmp:
        head = f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        conf = head + conf.replace(
            "http {",
            f"http {{\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;",
            1,
        )
        (Path(tmp) / "nginx.conf").write_text(conf)
        process = subprocess.Popen(
            ["nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp], stderr=subprocess.DEVNULL
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def served(replica: Proxy) -> float:
    text = httpx.get(f"{replica.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grok_proxy_requests_total{")
        and 'route="/api/v1/chat/completions"' in line
    )


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)"
)
def test_nginx_spreads_requests_and_relays_streams_unbuffered(sim: Simulator) -> None:
    with ExitStack() as stack:
        replicas = [stack.enter_context(proxy(sim.base_url)) for _ in range(2)]
        front = stack.enter_context(
            nginx_in_front_of([r.url.removeprefix("http://") for r in replicas])
        )
        body = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(20):
            assert (
                httpx.post(f"{front}/api/v1/chat/completions", json=body, headers=AUTH).status_code
                == 200
            )
        counts = [served(r) for r in replicas]
        assert sum(counts) == 20
        assert min(counts) >= 5, counts  # both replicas took a real share

        arrivals: list[float] = []
        started = time.monotonic()
        stream = {**body, "model": "grok-4@chunks=5,pace=150", "stream": True}
        with httpx.stream(
            "POST", f"{front}/api/v1/chat/completions", json=stream, headers=AUTH
        ) as response:
            # (nginx consumes X-Accel-Buffering itself; the pacing below shows it obeyed.)
            lines = []
            for line in response.iter_lines():
                lines.append(line)
                if '"content"' in line:
                    arrivals.append(time.monotonic() - started)
        assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
        assert len(arrivals) == 5
        assert arrivals[-1] - arrivals[0] >= 0.45  # paced 150 ms apart, not bunched by nginx


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)"
)
def test_nginx_relays_grpc_for_xai_sdk(sim: Simulator) -> None:
    from contextlib import closing

    from xai_sdk import Client
    from xai_sdk.chat import user

    grpc_port = free_port()
    settings = {
        "grok_proxy_grpc_port": str(free_port()),
        "xai_grpc_url": f"grpc://{sim.grpc_target}",
    }
    with (
        proxy(sim.base_url, 1, **settings) as replica,
        nginx_in_front_of([replica.url.removeprefix("http://")], [replica.grpc_target], grpc_port),
        closing(
            Client(
                api_key=KEY,
                api_host=f"127.0.0.1:{grpc_port}",
                use_insecure_channel=True,
                timeout=20,
            )
        ) as client,
    ):
        chat = client.chat.create(model="grok-4@chunks=3", messages=[user("hi")])
        assert chat.sample().content == "tok0 tok1 tok2 "
        assert [chunk.content for _, chunk in chat.stream()] == ["tok0 ", "tok1 ", "tok2 "]
