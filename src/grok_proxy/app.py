"""The application factory: shared client in the lifespan, routers, one error envelope."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy import __version__
from grok_proxy.config import Settings, get_settings
from grok_proxy.errors import Flavor, ProxyError, envelope_bytes, error_envelope
from grok_proxy.forwarder import Forwarder
from grok_proxy.logs import configure_logging
from grok_proxy.middleware import RequestLog, V1Alias
from grok_proxy.ops_auth import OpsGuard
from grok_proxy.paths import DotSegments
from grok_proxy.redact import remember_secrets
from grok_proxy.routes import anthropic as anthropic_routes
from grok_proxy.routes import api, chat, health, images, metrics, vision
from grok_proxy.routes.shared import DOCUMENTED_MODELS, validation_error
from grok_proxy.teams import team_from_settings
from grok_proxy.tracing import from_environment as tracing_from_environment
from grok_proxy.ws_relay import WebSocketRelay

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


def flavor_of(request: Request) -> Flavor:
    """Anthropic's envelope on Anthropic-style routes (/messages, /messages/...), else OpenAI's."""
    path = request.url.path
    anthropic = path.endswith("/messages") or "/messages/" in path
    return Flavor.ANTHROPIC if anthropic else Flavor.OPENAI


def create_app(settings: Settings | None = None, *, handle_signals: bool = False) -> FastAPI:
    """Build the proxy.

    `handle_signals` lets the app hear SIGTERM to drain gracefully (only under a server).
    """
    settings = settings or get_settings()
    # Relayed upstream errors never show these (redact.redact, in errors.upstream_error).
    remember_secrets(settings)
    # Teams (issue 17): None unless the proxy is shared, and then no database is touched.
    team = team_from_settings(settings)
    # OpenTelemetry traces (issue 23): None, and the SDK never imported, unless configured.
    tracing = tracing_from_environment(settings.upstream_base_url(), team)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.forwarder = Forwarder(settings)
        if handle_signals:
            app.state.forwarder.drain.install()
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
    # Routes go straight onto the app's router: include_router() would add a matching
    # layer per router to every request. The pass-through comes last so that every
    # explicit route wins over it.
    # Matching is linear: the busiest routes go first, FastAPI's own (/docs, /openapi.json)
    # and the pass-through (which must lose to every explicit route) last.
    builtin = list(app.router.routes)
    app.router.routes.clear()
    for area in (chat, api, images, vision, health, metrics):
        app.router.routes.extend(area.router.routes)
    # Anthropic-style routes beside /messages (count_tokens), before the pass-through.
    app.router.routes.extend(anthropic_routes.router.routes)
    if team is not None and settings.grok_proxy_admin_token is not None:
        # The team console (issue 23): only where /admin works; elsewhere /console is a 404.
        from grok_proxy.console import console_routes

        app.router.routes.extend(console_routes(team))
    app.router.routes.extend(builtin)
    app.router.routes.extend(api.passthrough.routes)
    if team is not None:  # teams (issue 17): innermost of ours, so paths are /api/v1 already
        team.install(app)
    # WebSocket upgrades never reach the router: the relay takes every one (after V1Alias).
    app.add_middleware(WebSocketRelay, settings=settings, team=team, tracing=tracing)
    app.add_middleware(V1Alias)
    # Operational routes need a token in shared deployments (see ops_auth).
    app.add_middleware(OpsGuard, settings=settings, shared=team is not None)
    # Outside V1Alias: dot-segments are resolved (or refused) before any prefix or route.
    app.add_middleware(DotSegments)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.split(settings.cors_allow_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    # Outermost of ours: the request id and timing cover everything below, errors included.
    app.add_middleware(RequestLog, max_header_bytes=settings.max_header_bytes, tracing=tracing)
    _install_error_handlers(app)
    app.openapi = lambda: _openapi_schema(app)  # type: ignore[method-assign]
    return app


def serve_app() -> FastAPI:
    """The factory uvicorn runs in each worker: logging first, then the app."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, handle_signals=True)
    if settings.grok_proxy_grpc_port:  # xAI's own SDK speaks gRPC, on a port of its own
        from grok_proxy.grpc_relay import attach

        attach(app, settings)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return _error_response(exc.status, envelope_bytes(flavor_of(request), exc), exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "No such route: {path}", 405: "Method {method} is not allowed on {path}"}
        text = message.get(exc.status_code, str(exc.detail)).format(
            path=request.url.path, method=request.method
        )
        body = error_envelope(flavor_of(request), exc.status_code, text)
        return _error_response(exc.status_code, body, exc.headers)

    async def request_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = validation_error(list(exc.errors()))
        return _error_response(error.status, envelope_bytes(flavor_of(request), error))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        body = error_envelope(flavor_of(request), 500, "Internal error in grok-proxy.")
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
