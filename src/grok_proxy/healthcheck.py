"""`python -m grok_proxy.healthcheck`: the container's HEALTHCHECK, asked where the server listens.

The address comes from the running server's own command line (PID 1 in a container), else
from HOST and PORT, so `--port 9000` and `-e PORT=9000` are both probed on the right port.
It speaks HTTP with `http.client`, which never goes through `HTTP_PROXY`: Docker injects
its proxy settings into containers, and the probe must reach this server, not a proxy.
"""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

from grok_proxy.cli import _parser
from grok_proxy.config import Settings

# A server listening on every interface is reached on the loopback one.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def server_arguments(cmdline: bytes) -> list[str] | None:
    """The arguments after `grok-proxy` (or `-m grok_proxy`) in a NUL-separated command line."""
    words = [w.decode(errors="replace") for w in cmdline.split(b"\0") if w]
    for index, word in enumerate(words):
        if Path(word).name == "grok-proxy" or (
            word == "grok_proxy" and index > 0 and words[index - 1] == "-m"
        ):
            return words[index + 1 :]
    return None


def listening_address(cmdline: bytes, settings: Settings) -> tuple[str, int]:
    """Host and port the server resolves, flags first, then the environment."""
    host, port = settings.serving.host, settings.serving.port
    arguments = server_arguments(cmdline)
    if arguments is not None:
        if not arguments or arguments[0] != "serve":
            arguments = ["serve", *arguments]
        known, _ = _parser().parse_known_args(arguments)
        host = known.host if getattr(known, "host", None) is not None else host
        port = known.port if getattr(known, "port", None) is not None else port
    return _ANY.get(host, host), port


def probe(host: str, port: int, timeout: float = 2.0) -> int:
    """The status of GET /health, or 0 when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def main() -> int:
    """0 when /health answers 200 where the server listens, 1 otherwise (Docker's convention)."""
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    host, port = listening_address(cmdline, Settings())
    status = probe(host, port)
    if status != 200:
        sys.stderr.write(f"GET http://{host}:{port}/health: {status or 'no answer'}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
