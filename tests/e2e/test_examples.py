"""Every example in docs/examples.md runs against the real proxy and the simulator."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.processes import Proxy, Simulator

EXAMPLES = (Path(__file__).parents[2] / "docs" / "examples.md").read_text()
BLOCKS = re.findall(r"```(bash|python|javascript)\n(.*?)```", EXAMPLES, re.DOTALL)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def run_example(language: str, code: str, live: Proxy, tmp_path: Path) -> str:
    code = code.replace("http://localhost:8000", live.url)
    code = code.replace("localhost:8001", live.grpc_target)  # xai-sdk's api_host
    code = code.replace("ws://localhost:8000", "ws" + live.url.removeprefix("http"))
    (tmp_path / "photo.png").write_bytes(PNG)
    if language == "bash":
        command = ["bash", "-c", code.replace("curl ", "curl --fail-with-body ", 1)]
    elif language == "python":
        command = [sys.executable, "-c", code]
    else:
        script = tmp_path / "example.mjs"
        script.write_text(code)
        command = ["node", str(script)]
    result = subprocess.run(
        command,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "XAI_API_KEY": KEY},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return result.stdout.decode()


def test_every_kind_of_example_is_present() -> None:
    assert {language for language, _ in BLOCKS} == {"bash", "python", "javascript"}
    assert len(BLOCKS) >= 14


@pytest.mark.parametrize(
    ("language", "code"), BLOCKS, ids=[f"{i}-{b[0]}" for i, b in enumerate(BLOCKS)]
)
def test_example_runs(
    language: str, code: str, live: Proxy, fresh_sim: Simulator, tmp_path: Path
) -> None:
    if language == "bash" and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    if language == "javascript" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    output = run_example(language, code, live, tmp_path)
    assert output.strip()
    assert '"error"' not in output
    assert fresh_sim.stats()["requests"] >= (0 if "/health" in code else 1)
    for needle in expected_output(code):
        assert needle in output, needle


def expected_output(code: str) -> list[str]:
    """What a user would see from each example, given the simulator's deterministic answers."""
    if "/health" in code:
        return ['"healthy"']
    if "grpc.RpcError" in code:
        return ["NOT_FOUND The model no-such-model does not exist"]
    if "/images/" in code or "images.generate" in code:
        extra = ["Hello!", "[", "tokens]"] if "OpenAI(" in code else []
        return ["https://imgen.x.ai/", *extra]
    if "/tokenize" in code:
        return ['"string_token":"Hello"']
    if "/models" in code:
        return ['"grok-4.7"']
    if "/language-models" in code:
        return ['"aliases"']
    if "Anthropic(" in code:
        return ["Hello!", "standing in for xAI.\nHello!"]  # plain answer, then the stream
    if '"stream": true' in code or "stream: true" in code:
        return ["data: [DONE]"] if "curl" in code else ["Hello!", "[done]"]
    return ["Hello!"]
