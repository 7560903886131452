"""The console's routes: the page and its assets, the session, the bridge to /admin, and
the read-only reports (JSON, CSV and SVG charts)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grok_proxy.calls.errors import Flavor, error_envelope
from grok_proxy.console.charts import breakdown_svg, timeline_svg
from grok_proxy.console.reports import MEASURES, WINDOWS, budgets, recent_failures, usage_over
from grok_proxy.console.session import COOKIE, SESSION_SECONDS, Sessions, same_origin
from grok_proxy.teams.admin import admin_app
from grok_proxy.teams.team import DB_ERRORS, Team

log = logging.getLogger("grok_proxy.console")

# No inline script or style, nothing from elsewhere: the page's own files and its own API.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CSV_COLUMNS = (
    "member",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "tokens",
    "cost_usd",
)

Handler = Callable[[Request], Awaitable[Response]]


def _asset(name: str) -> bytes:
    return files("grok_proxy.console").joinpath("static", name).read_bytes()


def _response(content: bytes | str, media_type: str, status: int = 200) -> Response:
    return Response(content, status, headers=SECURITY_HEADERS, media_type=media_type)


def _json(data: Any, status: int = 200) -> Response:
    return _response(orjson.dumps(data), "application/json", status)


def _error(status: int, message: str, code: str) -> Response:
    return _json(error_envelope(Flavor.OPENAI, status, message, code=code), status)


def console_routes(team: Team) -> list[BaseRoute]:
    """The /console routes of a shared proxy with an admin token."""
    token = team.settings.teams.admin_token
    assert token is not None
    console = Console(team, Sessions(token.get_secret_value()))
    return [
        Route("/console", console.page, methods=["GET"]),
        Route("/console/static/{name}", console.asset, methods=["GET"]),
        Route("/console/session", console.session, methods=["GET", "POST", "DELETE"]),
        Route("/console/api/usage", console.signed_in(console.usage), methods=["GET"]),
        Route("/console/api/usage.csv", console.signed_in(console.usage_csv), methods=["GET"]),
        Route("/console/api/budgets", console.signed_in(console.budgets), methods=["GET"]),
        Route("/console/api/failures", console.signed_in(console.failures), methods=["GET"]),
        Route("/console/chart/{kind}.svg", console.signed_in(console.chart), methods=["GET"]),
        Route(
            "/console/api/admin/{path:path}",
            AdminBridge(admin_app(team), console.sessions),
            methods=["GET", "POST", "PATCH", "DELETE"],
        ),
    ]


class Console:
    """The handlers of /console."""

    def __init__(self, team: Team, sessions: Sessions) -> None:
        self.team = team
        self.sessions = sessions
        self.page_html = _asset("index.html")
        self.assets = {name: _asset(name) for name in ASSETS}

    async def page(self, request: Request) -> Response:
        return _response(self.page_html, "text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return _error(404, f"No such route: {request.url.path}", "not_found")
        return _response(self.assets[name], ASSETS[name])

    def signed_in(self, handler: Handler) -> Handler:
        """`handler` behind the session check (and CSRF for anything but a read); 503 when
        the team database does not answer."""

        async def checked(request: Request) -> Response:
            if not self.sessions.allows(request):
                return _error(401, "Sign in to the console first.", "console_sign_in")
            try:
                return await handler(request)
            except DB_ERRORS as exc:
                log.warning("console: team database unreachable (%s)", type(exc).__name__)
                return _error(
                    503, "The team database is unreachable; try again shortly.", "team_db_down"
                )

        return checked

    async def session(self, request: Request) -> Response:
        """GET: the CSRF token of the current session; POST: sign in with the admin token;
        DELETE: sign out."""
        if request.method == "GET":
            nonce = self.sessions.nonce_of(request.cookies.get(COOKIE))
            if nonce is None:
                return _error(401, "Sign in to the console first.", "console_sign_in")
            return _json({"csrf": self.sessions.csrf_for(nonce)})
        if request.method == "DELETE":
            if not self.sessions.allows(request):
                return _error(403, "Missing or wrong CSRF token.", "csrf_failed")
            response = _json({"signed_in": False})
            response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
            return response
        # Signing in from another site would sign the browser into the attacker's session.
        if not same_origin(request) or "json" not in request.headers.get("content-type", ""):
            return _error(403, "Sign in from the console page itself.", "csrf_failed")
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            data = None
        presented = data.get("token") if isinstance(data, dict) else None
        if not isinstance(presented, str) or not self.sessions.token_matches(presented):
            return _error(401, "The admin token is missing or wrong.", "invalid_admin_token")
        cookie = self.sessions.issue()
        nonce = self.sessions.nonce_of(cookie)
        assert nonce is not None
        response = _json({"csrf": self.sessions.csrf_for(nonce)})
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def usage(self, request: Request) -> Response:
        window = request.query_params.get("window", "day")
        if window not in WINDOWS:
            return _error(422, "window must be one of hour, day, month", "invalid_value")
        report = await usage_over(self.team, window)
        return _json(
            {
                "window": window,
                "labels": report.labels,
                "bins": [totals.json() for totals in report.bins],
                "data": report.rows(),
            }
        )

    async def usage_csv(self, request: Request) -> Response:
        window = request.query_params.get("window", "day")
        if window not in WINDOWS:
            return _error(422, "window must be one of hour, day, month", "invalid_value")
        report = await usage_over(self.team, window)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in report.rows():
            writer.writerow([spreadsheet_safe(row[column]) for column in CSV_COLUMNS])
        response = _response(out.getvalue(), "text/csv; charset=utf-8")
        response.headers["content-disposition"] = f'attachment; filename="usage-{window}.csv"'
        return response

    async def budgets(self, request: Request) -> Response:
        return _json({"object": "list", "data": await budgets(self.team)})

    async def failures(self, request: Request) -> Response:
        return _json({"object": "list", "data": await recent_failures(self.team)})

    async def chart(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        window = request.query_params.get("window", "day")
        measure = request.query_params.get("measure", "cost")
        if kind not in {"timeline", "member", "model"} or window not in WINDOWS:
            return _error(404, f"No such chart: {request.url.path}", "not_found")
        if measure not in MEASURES:
            return _error(422, "measure must be one of requests, tokens, cost", "invalid_value")
        report = await usage_over(self.team, window)
        svg = (
            timeline_svg(report, measure)
            if kind == "timeline"
            else breakdown_svg(report, kind, measure)
        )
        return _response(svg, "image/svg+xml")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a name starting with = + - @ is not a formula."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


class AdminBridge:
    """/console/api/admin/<path> is /admin/<path> with the session standing in for the
    admin token: the same handlers, the same validation and errors (an ASGI app)."""

    def __init__(self, admin: ASGIApp, sessions: Sessions) -> None:
        self.admin = admin
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        if not self.sessions.allows(request):
            if self.sessions.nonce_of(request.cookies.get(COOKIE)) is None:
                refused = _error(401, "Sign in to the console first.", "console_sign_in")
            else:
                refused = _error(403, "Missing or wrong CSRF token.", "csrf_failed")
            await refused(scope, receive, send)
            return
        path = "/admin/" + scope["path_params"]["path"]
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in {b"authorization", b"cookie"}
        ]
        headers.append((b"authorization", b"Bearer " + self.sessions.admin_token))
        inner = {**scope, "path": path, "raw_path": path.encode(), "headers": headers}
        for name in ("path_params", "endpoint", "router", "route"):
            inner.pop(name, None)
        extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.admin(inner, receive, secured)
