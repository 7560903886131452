from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import Proxy, Simulator, free_port, proxy, simulator

KEY = "xai-test-key-0123456789"

# pytester runs user-style test files through the grok_proxy.testing plugin.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    with simulator() as running:
        yield running


@pytest.fixture(scope="session")
def live(sim: Simulator) -> Iterator[Proxy]:
    """The proxy, as a real process, in front of the simulator."""
    # Default settings, except that retries wait milliseconds instead of seconds.
    # Its gRPC listener relays to the simulator's gRPC API (xai-sdk examples use it).
    with proxy(
        sim.base_url,
        xai_retry_backoff="0.01",
        grok_proxy_grpc_port=str(free_port()),
        xai_grpc_url=f"grpc://{sim.grpc_target}",
    ) as running:
        yield running


@pytest.fixture
def fresh_sim(sim: Simulator) -> Simulator:
    """The simulator with its request log and counters emptied."""
    sim.reset()
    return sim
