"""LiteLLM as a peer: its proxy server in a throwaway virtualenv, in front of the simulator.

LiteLLM is not a dependency of grok-proxy: `litellm[proxy]` is installed with uv into
/tmp/litellm-venv (kept between runs) and run with one worker on the proxy's core, as an
OpenAI-compatible proxy whose model list points at the simulator's /v1 (`openai/` provider).

LiteLLM reads a comma in a model name as a list of models to fan out to, so the paced
model (`grok-4@chunks=50,pace=20`) is reached through a comma-free alias.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.processes import HOST, KEY, PROXY_CORE, pinned, process

VENV = Path("/tmp/litellm-venv")
PACKAGE = "litellm[proxy]"


def install() -> Path:
    """The LiteLLM command, installed on first use (raises with uv's output if it cannot)."""
    command = VENV / "bin" / "litellm"
    if not command.exists():
        for step in (
            ["uv", "venv", "--python", "3.11", str(VENV)],
            ["uv", "pip", "install", "--python", str(VENV), PACKAGE],
        ):
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed:\n{done.stderr[-2000:]}")
    return command


def version() -> str:
    done = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


@dataclass
class LiteLLM:
    """A running LiteLLM proxy: its pid, its chat URL, the key it wants, model aliases."""

    pid: int
    url: str
    key: str
    aliases: dict[str, str]


def config(upstream: str, models: list[str], master_key: str) -> tuple[str, dict[str, str]]:
    """LiteLLM's YAML config: one alias per simulator model, all to `upstream`."""
    aliases = {model: f"bench-model-{index}" for index, model in enumerate(models)}
    entries = "".join(
        f"  - model_name: {alias}\n"
        "    litellm_params:\n"
        f'      model: "openai/{model}"\n'
        f"      api_base: {upstream}\n"
        f"      api_key: {KEY}\n"
        for model, alias in aliases.items()
    )
    # LiteLLM refuses to start without a master key; callers send it as their bearer key.
    text = f"model_list:\n{entries}general_settings:\n  master_key: {master_key}\n"
    return text, aliases


@contextmanager
def litellm(port: int, upstream: str, models: list[str]) -> Iterator[LiteLLM]:
    """LiteLLM's proxy (one worker, pinned to the proxy core) serving `models`."""
    command = install()
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    text, aliases = config(upstream, models, master_key)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "litellm.yaml"
        path.write_text(text)
        argv = [str(command), "--config", str(path), "--host", HOST, "--port", str(port)]
        argv += ["--num_workers", "1"]
        env = {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
        }
        ready = f"http://{HOST}:{port}/health/liveliness"
        with process(pinned(PROXY_CORE, argv), ready, env, timeout=180) as proc:
            yield LiteLLM(
                proc.pid, f"http://{HOST}:{port}/v1/chat/completions", master_key, aliases
            )
