"""The deployment files: the Dockerfile lints clean, the manifests hold what operators rely
on, and the repository's nginx config spreads load over two real proxies and passes
streams through unbuffered."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from grok_proxy.config import Settings
from grok_proxy.observability import metrics
from tests.conftest import KEY
from tests.processes import Proxy, Simulator, free_port, paced_stream, proxy, wait_until_up

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
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert "--gid 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "grok_proxy.healthcheck" in dockerfile
    # Pinned by Debian codename; replaceable for machines without Docker Hub.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", dockerfile, re.MULTILINE)
    # The dependency layer depends on the lock only, not on the README.
    assert re.search(r"^COPY pyproject.toml uv.lock \./$", dockerfile, re.MULTILINE)
    # Listening is configured by environment, so `docker run -e PORT=...` needs no command.
    assert '"--host"' not in dockerfile and "HOST=0.0.0.0" in dockerfile
    # The drain ends before `docker stop` (10 s by default) kills the process.
    grace = re.search(r"^\s+SHUTDOWN_GRACE_SECONDS=(\d+)$", dockerfile, re.MULTILINE)
    assert grace and float(grace[1]) < 10
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)


def kubernetes_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_match_the_api_schema(version: str) -> None:
    documents = kubernetes_documents()
    assert {d["kind"] for d in documents} == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "ConfigMap",
    }
    for document in documents:
        # Strict: a misspelt field is an error, not silently ignored by the cluster.
        kubernetes_validate.validate(document, version, strict=True)


def by_kind() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in kubernetes_documents()}


def test_kubernetes_pods_pass_pod_security_restricted() -> None:
    pod = by_kind()["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["readOnlyRootFilesystem"] is True
    # Read-only root: several workers need a writable /tmp for their shared metrics.
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    # A version, never `latest`.
    assert not container["image"].endswith(":latest") and ":" in container["image"]


def test_kubernetes_pods_drain_streams_and_scale_on_them() -> None:
    kinds = by_kind()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    grace = int(env["SHUTDOWN_GRACE_SECONDS"])
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert grace >= 300  # reasoning streams last minutes
    assert pod["terminationGracePeriodSeconds"] > pause + grace
    assert env["FORWARDED_ALLOW_IPS"] != "*"
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/health"
    assert readiness["failureThreshold"] >= 2 and readiness["timeoutSeconds"] >= 2
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["topologySpreadConstraints"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == {"app": "grok-proxy"}

    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "grok-proxy"
    streams = next(m for m in hpa["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    adapter = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
    assert streams in {rule["name"]["as"] for rule in adapter["rules"]}
    assert streams == metrics.OPEN_STREAMS._name

    ingress = kinds["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > longest_wait()
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/api/v1", "/v1", "/health"}  # not /metrics, /docs, /openapi.json


def longest_wait() -> float:
    """The longest a non-streamed call can wait before the proxy answers (504 at worst)."""
    settings = Settings(_env_file=None)
    return (
        settings.upstream.read_timeout
        + settings.retry.deadline
        + settings.retry.max_wait
        + settings.upstream.connect_timeout
    )


def test_compose_stops_replicas_before_nginx_and_monitors_each_replica() -> None:
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    services = compose["services"]
    replicas, nginx = services["grok-proxy"], services["nginx"]
    assert replicas["deploy"]["replicas"] >= 2
    assert "nginx.conf" in nginx["volumes"][0]
    # Compose stops dependents first: the replicas drain while nginx still relays.
    assert "nginx" in replicas["depends_on"]
    assert "depends_on" not in nginx
    grace = float(replicas["environment"]["SHUTDOWN_GRACE_SECONDS"])
    assert seconds(replicas["stop_grace_period"]) > grace
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    shutdown = re.search(r"worker_shutdown_timeout (\d+)s;", conf)
    assert shutdown and float(shutdown[1]) > grace
    assert seconds(nginx["stop_grace_period"]) >= float(shutdown[1])
    for name in ("grok-proxy", "nginx", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            assert (ROOT / "deploy" / volume.split(":")[0]).exists(), volume
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    dns = scrape["scrape_configs"][0]["dns_sd_configs"][0]
    assert dns["names"] == ["grok-proxy"] and dns["port"] == 8000


def seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)"
)
def test_nginx_config_is_valid_and_outwaits_the_proxy(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "nginx",
            "-t",
            "-c",
            str(ROOT / "deploy" / "nginx.conf"),
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-g",
            f"pid {tmp_path}/nginx.pid;",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert read_timeout and float(read_timeout[1]) > longest_wait()
    # Retries only where nothing reached a replica, so a POST is never sent twice.
    assert "http_503" not in conf.split("proxy_next_upstream ", 1)[1].split(";", 1)[0]


@contextmanager
def nginx_in_front_of(
    upstreams: list[str], grpc_upstreams: list[str] | None = None, grpc_port: int = 0
) -> Iterator[str]:
    """The repository's deploy/nginx.conf, with local upstreams and a free local port."""
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    # The replicas' name, resolved by Docker's DNS in compose, names a local group here
    # (nginx looks a variable's host up among its upstream groups before any resolver).
    servers = "".join(f"    server {u};\n" for u in upstreams)
    conf = conf.replace("set $grok_proxy grok-proxy:8000;", "set $grok_proxy replicas;")
    conf = conf.replace("http {", f"http {{\n  upstream replicas {{\n{servers}  }}", 1)
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    # The gRPC block: its own upstreams and port (unused placeholders when not asked for).
    grpc_servers = "".join(f"    server {u};\n" for u in grpc_upstreams or upstreams)
    conf = conf.replace(
        "set $grok_proxy_grpc grok-proxy:8001;", "set $grok_proxy_grpc grpc_replicas;"
    )
    conf = conf.replace("http {", f"http {{\n  upstream grpc_replicas {{\n{grpc_servers}  }}", 1)
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

        # nginx consumes X-Accel-Buffering itself; the pacing below shows it obeyed.
        lines, arrivals = paced_stream(f"{front}/api/v1", KEY)
        assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
        assert len(arrivals) == 5
        assert arrivals[-1] - arrivals[0] >= 0.45  # paced 150 ms apart, not bunched by nginx


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)"
)
def test_nginx_hides_operator_pages_and_skips_a_stopped_replica(sim: Simulator) -> None:
    with ExitStack() as stack:
        replicas = [stack.enter_context(proxy(sim.base_url)) for _ in range(2)]
        front = stack.enter_context(
            nginx_in_front_of([r.url.removeprefix("http://") for r in replicas])
        )
        for page in ("/metrics", "/docs", "/openapi.json", "/redoc"):
            assert httpx.get(f"{front}{page}").status_code == 404, page
            assert httpx.get(f"{replicas[0].url}{page}").status_code == 200, page

        # A replica that stopped (or drains: it no longer accepts) refuses the connection;
        # nothing was sent, so nginx gives the POST to the other one.
        stopped = replicas[1].process
        stopped.terminate()
        stopped.wait(timeout=10)
        body = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [
            httpx.post(f"{front}/api/v1/chat/completions", json=body, headers=AUTH).status_code
            for _ in range(6)
        ]
    assert statuses == [200] * 6


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
