"""The OpenAI Node SDK and the Vercel AI SDK (`ai` + `@ai-sdk/xai`) work offline through the proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY
from tests.processes import Proxy

NODE_DIR = Path(__file__).parents[1] / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
    reason="needs node and `npm ci --prefix tests/node` (.ci/run does both)",
)


def run(case: str, live: Proxy) -> Any:
    result = subprocess.run(
        ["node", str(NODE_DIR / "clients.mjs"), case],
        env={**os.environ, "GROK_BASE_URL": live.api, "XAI_API_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_openai_node_stream_helpers(live: Proxy) -> None:
    out = run("openai-stream", live)
    assert out["text"] == out["final"] == out["chat"]
    assert out["text"].startswith("Hello!")


def test_openai_node_streamed_tool_call_and_result(live: Proxy) -> None:
    out = run("openai-tools", live)
    assert out["name"] == "get_weather" and out["args"]["city"]
    assert "warm" in out["answer"]


def test_vercel_generate_object(live: Proxy) -> None:
    thing = run("ai-generate-object", live)["object"]
    assert set(thing) == {"name", "tags", "size"} and thing["size"] in {"s", "m"}


def test_vercel_stream_text_with_a_tool(live: Proxy) -> None:
    out = run("ai-stream-text-tool", live)
    assert out["calls"] == ["get_weather"]
    assert "warm in" in out["text"]
