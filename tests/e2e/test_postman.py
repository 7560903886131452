"""The Postman collection is current, and every request in it works (newman, as in CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

ROOT = Path(__file__).parents[2]
COLLECTION = ROOT / "docs" / "postman_collection.json"


def test_collection_is_generated_from_the_current_schema() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_postman.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    collection = json.loads(COLLECTION.read_text())
    assert {v["key"] for v in collection["variable"]} == {"baseUrl", "xaiApiKey"}
    requests = [item for folder in collection["item"] for item in folder["item"]]
    assert len(requests) >= 15
    assert all(r["request"]["url"]["raw"].startswith("{{baseUrl}}") for r in requests)


@pytest.mark.skipif(
    shutil.which("newman") is None, reason="newman is not installed (.ci/run installs it)"
)
def test_newman_runs_the_collection_against_the_proxy(live: Proxy, fresh_sim: Simulator) -> None:
    result = subprocess.run(
        [
            "newman",
            "run",
            str(COLLECTION),
            "--env-var",
            f"baseUrl={live.url}",
            "--env-var",
            f"xaiApiKey={KEY}",
            "--reporters",
            "cli",
            "--disable-unicode",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert fresh_sim.stats()["requests"] >= 12
