"""The benchmark's quick run: every request succeeds, every stream ends with [DONE], every
WebSocket echo comes back, through nginx and grok-proxy alike (figures are not asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("nginx") is None,
    reason="the benchmark needs wrk and nginx (apt-get install wrk nginx; .ci/run installs them)",
)
@pytest.mark.timeout(150)
def test_benchmark_quick_run_is_correct() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Columns: direct | nginx | grok-proxy | LiteLLM (not run).
    assert "| plain: failed requests (1 and 32 connections) | 0 | 0 | 0 |  |" in out
    assert "paced 5 ms: completed with [DONE] | 20/20 | 20/20 | 20/20 |  |" in out
    assert "unpaced streams of 9 events: completed with [DONE] | 20/20 | 20/20 | 20/20 |" in out
    slow = "40 slow streams (one event every 300 ms, 2 s)"
    assert f"{slow}: completed with [DONE] | 40/40 |  | 40/40 |" in out
    assert "sessions completed, echoes | 5/5, 25/25 |  | 5/5, 25/25 |" in out
    # The proxy was watched while it held the slow streams: each holds a caller's socket.
    assert peak(out, "proxy peak open descriptors") >= 40
    assert peak(out, "proxy peak upstream connections") >= 1


def peak(out: str, row: str) -> int:
    """The grok-proxy column of a row of the slow streams."""
    line = next(line for line in out.splitlines() if row in line)
    return int(line.split("|")[4].strip().replace(",", ""))
