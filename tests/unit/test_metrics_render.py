"""/metrics is rendered off the event loop, so a slow scrape does not stall requests."""

from __future__ import annotations

import threading

import pytest

from grok_proxy.observability import metrics
from tests.unit.harness import proxied, upstream


@pytest.mark.anyio
async def test_metrics_render_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real_render = metrics.render

    def render() -> tuple[bytes, str]:
        threads.append(threading.current_thread())
        return real_render()

    monkeypatch.setattr(metrics, "render", render)
    async with proxied(upstream()) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "grok_proxy_requests_total" in response.text
    assert threads
    assert threads[0] is not threading.main_thread()


def test_only_accepted_models_get_their_own_label() -> None:
    assert metrics.model_label("made-up-model-xyz", accepted=False) == "other"
    assert metrics.model_label("x" * 65, accepted=True) == "other"
    assert metrics.model_label("grok-test-accepted", accepted=True) == "grok-test-accepted"
    assert metrics.model_label("grok-test-accepted", accepted=False) == "grok-test-accepted"
