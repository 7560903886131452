from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Proxy, Simulator, free_port, proxy, simulator

KEY = "xai-test-key-0123456789"

# pytester runs user-style test files through the grok_proxy.testing plugin.
pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier by its folder: tests/unit is `unit`, tests/e2e is `e2e`."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if folder in ("unit", "e2e"):
            item.add_marker(folder)


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


@pytest.fixture(scope="session", autouse=True)
def team_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Proxies started with access keys keep their team database here, not in the repo."""
    import os

    before = os.environ.get("GROK_PROXY_DATA_DIR")
    os.environ["GROK_PROXY_DATA_DIR"] = str(tmp_path_factory.mktemp("team-data"))
    yield
    if before is None:
        del os.environ["GROK_PROXY_DATA_DIR"]
    else:
        os.environ["GROK_PROXY_DATA_DIR"] = before
