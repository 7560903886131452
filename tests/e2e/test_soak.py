"""A 30-second soak: faults, hang-ups and streams; no memory creep, no leaked descriptors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
def test_soak_30_seconds() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "30"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "soak passed" in result.stdout
