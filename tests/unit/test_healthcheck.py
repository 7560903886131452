"""The container's healthcheck probes where the server listens: its flags, else HOST/PORT."""

from __future__ import annotations

from grok_proxy.config import Settings
from grok_proxy.healthcheck import listening_address, server_arguments

IMAGE_DEFAULTS = Settings(_env_file=None, host="0.0.0.0", port=8000)


def cmdline(*words: str) -> bytes:
    return b"\0".join(w.encode() for w in words) + b"\0"


def test_the_environment_when_the_command_gives_no_flags() -> None:
    command = cmdline("/app/.venv/bin/python", "/app/.venv/bin/grok-proxy", "serve")
    assert listening_address(command, IMAGE_DEFAULTS) == ("127.0.0.1", 8000)
    port_9000 = Settings(_env_file=None, host="0.0.0.0", port=9000)
    assert listening_address(command, port_9000) == ("127.0.0.1", 9000)


def test_flags_win_over_the_environment() -> None:
    command = cmdline("python", "/app/.venv/bin/grok-proxy", "--workers", "2", "--port", "9001")
    assert listening_address(command, IMAGE_DEFAULTS) == ("127.0.0.1", 9001)
    module = cmdline("python", "-m", "grok_proxy", "serve", "--host", "::", "--port", "9002")
    assert listening_address(module, IMAGE_DEFAULTS) == ("::1", 9002)


def test_another_init_process_leaves_the_environment() -> None:
    assert server_arguments(cmdline("/sbin/tini", "--", "sh")) is None
    assert listening_address(cmdline("/sbin/tini", "--", "sh"), IMAGE_DEFAULTS) == (
        "127.0.0.1",
        8000,
    )
