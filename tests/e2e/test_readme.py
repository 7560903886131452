"""Every curl example in the README works against the real proxy and the simulator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

README = Path(__file__).parents[2] / "README.md"
CURL_BLOCKS = [
    block
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    if block.lstrip().startswith("curl")
]


def test_readme_has_curl_examples() -> None:
    assert len(CURL_BLOCKS) >= 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("block", CURL_BLOCKS, ids=lambda b: b.split("\n")[0][:50])
def test_readme_curl_example(block: str, live: Proxy, fresh_sim: Simulator) -> None:
    # --fail-with-body makes an HTTP error fail the command.
    command = block.replace("http://localhost:8000", live.url).replace(
        "curl ", "curl --fail-with-body ", 1
    )
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        env={**os.environ, "XAI_API_KEY": KEY},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    output = result.stdout.decode()
    if '"stream": true' in block:
        assert output.rstrip().endswith("data: [DONE]")
    elif "/chat/completions" in block:
        assert '"chat.completion"' in output
    else:
        assert '"healthy"' in output
