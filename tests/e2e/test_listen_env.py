"""`grok-proxy` without flags listens where HOST and PORT say (the container's way)."""

from __future__ import annotations

import httpx

from tests.processes import HOST, Simulator, free_port, running


def test_port_and_host_from_the_environment(sim: Simulator) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = {"HOST": HOST, "PORT": str(port), "XAI_BASE_URL": sim.base_url}
    with running([], f"{url}/health", env):
        assert httpx.get(f"{url}/health").json()["status"] == "healthy"
