"""The application factory: shared client in the lifespan, routers, one error envelope."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from grok_proxy import __version__
from grok_proxy.calls.errors import ProxyError, envelope_bytes, error_envelope, flavor_in
from grok_proxy.calls.forwarder import Forwarder
from grok_proxy.calls.redact import remember_secrets
from grok_proxy.calls.relay import StreamHooks
from grok_proxy.config import Settings, get_settings
from grok_proxy.observability.logs import configure_logging
from grok_proxy.observability.metrics import OPEN_STREAMS, Metrics
from grok_proxy.observability.tracing import from_environment as tracing_from_environment
from grok_proxy.relays.websocket import WebSocketRelay
from grok_proxy.routes import health, metrics
from grok_proxy.routes.api import PASSTHROUGH, PASSTHROUGH_DESCRIPTION
from grok_proxy.routes.catalog import ROWS, route_table
from grok_proxy.routes.shared import DOCUMENTED_MODELS, documented, validation_error
from grok_proxy.routes.table import PASSTHROUGH_METHODS
from grok_proxy.serving.access import AccessLog
from grok_proxy.serving.entry import Entry
from grok_proxy.serving.lifecycle import Drain
from grok_proxy.serving.observers import Observer
from grok_proxy.serving.ops_auth import OpsGuard
from grok_proxy.teams import team_from_settings

if TYPE_CHECKING:
    from grok_proxy.calls.policies import CallPolicy, SessionPolicy
    from grok_proxy.teams.team import Team

log = logging.getLogger("grok_proxy")

# Allocations between two collections of the youngest generation (see the lifespan).
GC_THRESHOLD = 10_000


# Response headers a browser page may read (CORS hides all others from scripts).
EXPOSED_HEADERS = [
    "x-request-id",
    "x-upstream-request-id",
    "x-grok-proxy-attempts",
    "retry-after",
    "server-timing",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
]


def create_app(settings: Settings | None = None, *, handle_signals: bool = False) -> Entry:
    """Build the proxy.

    `handle_signals` lets the app hear SIGTERM to drain gracefully (only under a server).
    """
    settings = settings or get_settings()
    # Relayed upstream errors never show these (redact.redact, in errors.upstream_error).
    remember_secrets(settings)
    # Teams (issue 17): None unless the proxy is shared, and then no database is touched.
    team = team_from_settings(settings)
    # OpenTelemetry traces (issue 23): None, and the SDK never imported, unless configured.
    tracing = tracing_from_environment(settings.upstream.effective_base_url, team)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The open-streams gauge, told by the relay as streams open and end.
        open_streams = StreamHooks(OPEN_STREAMS.inc, OPEN_STREAMS.dec)
        # The worker's one shutdown fan-out: relays register their streams with it, the
        # gRPC listener and /health hear when it begins.
        app.state.drain = drain = Drain(settings.serving.shutdown_grace_seconds)
        app.state.forwarder = Forwarder(settings, drain.streams, open_streams)
        if handle_signals:
            drain.install()
        if team is not None:  # teams (issue 17): members' keys in, the account's key out
            await team.start(app.state.forwarder.client)
            app.state.forwarder.auth = team.caller_auth()
        # Everything built so far lives as long as the process: move it out of the
        # collector's sight, so full collections stay short and do not stall requests.
        gc.collect()
        gc.freeze()
        # Requests make short-lived objects by the thousand, freed by reference counting;
        # at the default threshold (700) the collector ran every few requests and took 10 %
        # of a loaded worker's CPU, 1.6 % at this one. Much higher (100,000) let cyclic
        # garbage pile up: the soak test's RSS grew 7 MB in 30 s (docs/benchmarks.md).
        gc.set_threshold(GC_THRESHOLD, 10, 10)
        try:
            yield
        finally:
            await app.state.forwarder.aclose()
            if team is not None:  # teams (issue 17)
                await team.aclose()
            if tracing is not None:  # the last spans out (workers skip atexit handlers)
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(
        title="grok-proxy",
        version=__version__,
        summary="A fast, faithful local gateway to the xAI (Grok) API.",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks cost time on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.team = team
    app.state.tracing = tracing
    # Metrics, access lines, traces: one set of observers for HTTP, WebSocket and gRPC.
    observers: tuple[Observer, ...] = (Metrics(), AccessLog(), *([tracing] if tracing else []))
    app.state.observers = observers
    # FastAPI serves what is not a row (health, metrics, docs, the console) and documents
    # every row; the entry (entry.py) serves the rows itself.
    builtin = list(app.router.routes)
    app.router.routes.clear()
    for row in ROWS:
        documented(app.router, row)
    for area in (health, metrics):
        app.router.routes.extend(area.router.routes)
    if team is not None and settings.teams.admin_token is not None:
        # The team console (issue 23): only where /admin works; elsewhere /console is a 404.
        from grok_proxy.console import console_routes

        app.router.routes.extend(console_routes(team))
    app.router.routes.extend(builtin)
    # One operation per method in OpenAPI; it loses to every explicit route.
    for method in PASSTHROUGH_METHODS:
        documented(
            app.router,
            replace(
                PASSTHROUGH,
                method=method,
                summary=f"Any other xAI route ({method}), forwarded verbatim",
                description=PASSTHROUGH_DESCRIPTION,
            ),
            name=f"forward_{method.lower()}",
        )
    _install_error_handlers(app)
    app.openapi = lambda: _openapi_schema(app)  # type: ignore[method-assign]
    entry = Entry(
        app,
        route_table(),
        # WebSocket upgrades never reach FastAPI: the relay takes every one.
        websockets=WebSocketRelay(
            app, settings=settings, policy=team_sessions(team), observers=observers
        ),
        # Operational routes need a token in shared deployments (see ops_auth).
        ops=OpsGuard(settings, shared=team is not None),
        observers=observers,
        # Teams (issue 17): the gate in front of the rows (and /admin) of a shared proxy.
        policy=None if team is None else team_gate(team, settings),
    )
    if settings.serving.cors_allow_origins:
        entry.serve = CORSMiddleware(
            entry.route,
            allow_origins=settings.serving.cors_allow_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    return entry


def team_gate(team: Team, settings: Settings) -> Callable[[ASGIApp], ASGIApp]:
    """The team's HTTP gate (and its /admin API), to put in front of the rows."""
    from grok_proxy.teams.admin import admin_app
    from grok_proxy.teams.gate import TeamGate

    admin = admin_app(team)
    return lambda rows: TeamGate(
        rows, team=team, admin=admin, max_body_bytes=settings.limits.max_body_bytes
    )


def team_sessions(team: Team | None) -> SessionPolicy | None:
    """The team's WebSocket policy on a shared proxy."""
    if team is None:
        return None
    from grok_proxy.teams.ws_sessions import TeamSessions

    return TeamSessions(team)


def team_calls(team: Team | None) -> CallPolicy | None:
    """The team's gRPC policy on a shared proxy."""
    if team is None:
        return None
    from grok_proxy.teams.grpc_calls import TeamCalls

    return TeamCalls(team)


def serve_app() -> Entry:
    """The factory uvicorn runs in each worker: logging first, then the app."""
    settings = get_settings()
    configure_logging(settings.logs.level, settings.logs.format)
    entry = create_app(settings, handle_signals=True)
    if settings.serving.grpc_port:  # xAI's own SDK speaks gRPC, on a port of its own
        from grok_proxy.relays.grpc import attach

        attach(entry.app, settings, team_calls(entry.state.team))
    return entry


def _install_error_handlers(app: FastAPI) -> None:
    async def proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return _error_response(
            exc.status, envelope_bytes(flavor_in(request.scope), exc), exc.headers
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "No such route: {path}", 405: "Method {method} is not allowed on {path}"}
        text = message.get(exc.status_code, str(exc.detail)).format(
            path=request.url.path, method=request.method
        )
        body = error_envelope(flavor_in(request.scope), exc.status_code, text)
        return _error_response(exc.status_code, body, exc.headers)

    async def request_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = validation_error(list(exc.errors()))
        return _error_response(error.status, envelope_bytes(flavor_in(request.scope), error))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        body = error_envelope(flavor_in(request.scope), 500, "Internal error in grok-proxy.")
        return _error_response(500, body)

    app.add_exception_handler(ProxyError, proxy_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _error_response(
    status: int, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status, headers=headers, media_type="application/json")


def _openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request models that routes validate themselves."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in DOCUMENTED_MODELS.items():
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[name] = model_schema
        app.openapi_schema = schema
    return app.openapi_schema
