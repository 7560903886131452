"""What operators see: a real Prometheus scrapes a running proxy, and every query of the
Grafana dashboard (deploy/grafana) and of the autoscaler's adapter rule returns numbers."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import KEY
from tests.processes import Simulator, free_port, proxy

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "grok-proxy.json"
AUTH = {"authorization": f"Bearer {KEY}"}
# The labels Kubernetes service discovery gives a pod's samples, which the adapter rule uses.
POD = {"namespace": "default", "pod": "grok-proxy-0"}

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (.ci/run installs Debian's package)",
)


@contextmanager
def prometheus(target: str) -> Iterator[str]:
    """deploy/prometheus.yml's job, scraping `target` every second instead of through DNS."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    job = config["scrape_configs"][0]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target], "labels": POD}]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="grok-proxy-prometheus-") as tmp:
        (Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(config))
        with open(Path(tmp) / "prometheus.log", "wb") as log:
            process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp}/prometheus.yml",
                    f"--storage.tsdb.path={tmp}/data",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((Path(tmp) / "prometheus.log").read_text())
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def fill(expr: str) -> str:
    # $__rate_interval: 10 s holds several of the test's 1 s scrapes; $instance: all.
    return expr.replace("$__rate_interval", "10s").replace("$instance", ".+")


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def numbers(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


class Traffic:
    """Keeps every kind of request the dashboard shows flowing until stopped."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            while not self.stopped.is_set():
                self.once(client)

    def once(self, client: httpx.Client) -> None:
        chat = f"{self.api}/chat/completions"
        hello = [{"role": "user", "content": "hi"}]
        client.post(chat, json={"model": "grok-4", "messages": hello})  # tokens
        client.post(chat, json={"model": "grok-4@status=503", "messages": hello})  # retries, 5xx
        client.post(chat, json={"model": "nope", "messages": "not a list"})  # 4xx
        cut = {"model": "grok-4@chunks=4,cut=2", "messages": hello, "stream": True}
        with client.stream("POST", chat, json=cut) as response:  # an upstream error
            response.read()
        plain = {"model": "grok-4@chunks=2", "messages": hello, "stream": True}
        with client.stream("POST", chat, json=plain) as response:  # a stream without usage
            response.read()


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_autoscaler_queries_return_data(sim: Simulator) -> None:
    with proxy(sim.base_url, xai_retry_backoff="0.01", xai_retry_max_wait="0.05") as running:
        traffic = Traffic(running.api)
        # One stream held open for the whole test, so the open-streams gauge is above zero.
        held = {
            "model": "grok-4@chunks=2000,pace=20",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        with (
            prometheus(running.url.removeprefix("http://")) as url,
            httpx.Client(headers=AUTH, timeout=60) as client,
            client.stream("POST", f"{running.api}/chat/completions", json=held) as open_stream,
        ):
            # The iterator stays referenced: once collected, httpx would close the stream.
            chunks = open_stream.iter_bytes()
            next(chunks)
            traffic.thread.start()
            try:
                missing = wait_for_numbers(url, dashboard_queries(), timeout=40)
                assert not missing, f"panels without data: {missing}"

                # prometheus-adapter's rule, rendered as the adapter renders it for one pod.
                adapter = yaml.safe_load(
                    (ROOT / "deploy" / "kubernetes" / "prometheus-adapter.yaml").read_text()
                )
                rule = yaml.safe_load(adapter["data"]["config.yaml"])["rules"][0]
                assert query(url, rule["seriesQuery"])
                per_pod = (
                    rule["metricsQuery"]
                    .replace("<<.Series>>", rule["name"]["as"])
                    .replace("<<.LabelMatchers>>", 'namespace="default",pod=~"grok-proxy-0"')
                    .replace("<<.GroupBy>>", "pod")
                )
                result = query(url, per_pod)
                assert [s["metric"] for s in result] == [{"pod": "grok-proxy-0"}]
                assert numbers(result)[0] >= 1
            finally:
                traffic.stopped.set()
                traffic.thread.join(timeout=30)


def wait_for_numbers(url: str, queries: list[tuple[str, str]], timeout: float) -> list[str]:
    """Poll until every query returns at least one finite number; the titles still without."""
    deadline = time.monotonic() + timeout
    missing = [title for title, _ in queries]
    while missing and time.monotonic() < deadline:
        missing = [
            f"{title}: {expr}"
            for title, expr in queries
            if not any(math.isfinite(n) for n in numbers(query(url, fill(expr))))
        ]
        if missing:
            time.sleep(0.5)
    return missing
