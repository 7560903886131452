"""The benchmark's smoke run: every request succeeds and every stream ends with [DONE]."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("nginx") is None,
    reason="the benchmark needs wrk and nginx (apt-get install wrk nginx; .ci/run installs them)",
)
@pytest.mark.timeout(120)
def test_benchmark_smoke_run_is_correct() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed requests | 0 | 0 | 0 | 0 |" in result.stdout
    assert "completed with [DONE] | 20 | | 20 | 20 |" in result.stdout
