"""`grok-proxy [serve]` starts the proxy; `grok-proxy simulate` starts the offline xAI stand-in."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from grok_proxy import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grok-proxy", description="A fast, faithful local gateway to the xAI (Grok) API."
    )
    parser.add_argument("--version", action="version", version=f"grok-proxy {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the proxy (the default)")
    # Unset flags fall back to HOST, PORT and WORKERS (config.Settings), so a container is
    # configured by environment without repeating its whole command.
    serve.add_argument("--host", help="address to listen on (default: HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT, else 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WORKERS, else 1)")
    serve.add_argument(
        "--grpc-port", type=int, help="gRPC port (default: GROK_PROXY_GRPC_PORT, 8001; 0: off)"
    )

    simulate = commands.add_parser("simulate", help="run the offline stand-in for api.x.ai")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--port", type=int, default=9100, help="port to listen on")
    simulate.add_argument("--grpc-port", type=int, default=9101, help="gRPC port (0: off)")
    # Teams (issue 17): parsed by grok_proxy.teams.cli; listed here for --help.
    commands.add_parser("members", help="add, list, disable members of a shared proxy")
    commands.add_parser("usage", help="usage and cost per member, model and day")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `grok-proxy` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"members", "usage"}:  # teams (issue 17)
        from grok_proxy.teams.cli import main as teams_main

        teams_main(argv)
        return
    if not argv or argv[0] not in {"serve", "simulate", "-h", "--help", "--version"}:
        argv = ["serve", *argv]  # `serve` is the default command
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        from grok_proxy.simulator.server import serve as simulate

        simulate(args.host, args.port, args.grpc_port)
        return
    if args.grpc_port is not None:
        os.environ["GROK_PROXY_GRPC_PORT"] = str(args.grpc_port)  # workers read it from there
    serve(args.host, args.port, args.workers)


def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the proxy under uvicorn with its fast loop and HTTP parser."""
    import uvicorn

    from grok_proxy.observability.logs import configure_logging
    from grok_proxy.serving.http_protocol import PROTOCOL, raise_open_files_limit
    from grok_proxy.serving.startup import settings_or_exit

    settings = settings_or_exit()
    host = settings.serving.host if host is None else host
    port = settings.serving.port if port is None else port
    workers = settings.serving.workers if workers is None else workers
    configure_logging(settings.logs.level, settings.logs.format)
    raise_open_files_limit()
    if settings.serving.grpc_port:
        from grok_proxy.relays.grpc import announce

        announce(settings, host, port)
    if workers > 1:
        # Each worker is its own process: metrics add up only through a shared directory.
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
            prefix="grok-proxy-metrics-"
        )
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    uvicorn.run(
        "grok_proxy.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # httptools with limits on head size, head and body time, and connections.
        http=PROTOCOL,
        log_level=settings.logs.level,
        # grok-proxy's own logging set-up (logs.configure_logging) formats every line.
        log_config=None,
        # Per-request access lines come from grok-proxy itself, without keys.
        access_log=False,
        # Connections waiting to be accepted: a burst of thousands of streams must not see
        # resets (the kernel caps this at net.core.somaxconn).
        backlog=max(2048, settings.limits.max_connections),
        # Keep-alive outlasts common load balancers' 60 s idle, so they reuse connections.
        timeout_keep_alive=75,
        # X-Forwarded-For is trusted only from the addresses configured for it.
        proxy_headers=bool(settings.serving.forwarded_allow_ips),
        forwarded_allow_ips=settings.serving.forwarded_allow_ips or None,
        server_header=False,
        # In-flight requests and streams get this long after SIGTERM (see lifecycle.Drain).
        # uvicorn takes whole seconds; streams are ended at the exact grace (lifecycle.Drain).
        timeout_graceful_shutdown=math.ceil(settings.serving.shutdown_grace_seconds),
        # WebSocket sessions: relayed by relays.websocket, ended by the drain on shutdown.
        ws="grok_proxy.serving.ws_protocol:RelayWebSocketProtocol",
        ws_max_size=settings.limits.ws_max_message_bytes,
        # No permessage-deflate towards callers (nor upstream, ws_relay): compressing each
        # audio chunk costs CPU and latency on every message, for little gain on base64 audio.
        ws_per_message_deflate=False,
    )
