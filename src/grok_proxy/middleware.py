"""Pure ASGI middleware (Starlette's BaseHTTPMiddleware would hide client disconnects)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class V1Alias:
    """Serves `/v1/...` as `/api/v1/...`: one set of routes, so matching stays cheap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            scope = dict(scope)
            scope["path"] = "/api" + scope["path"]
            raw_path = scope.get("raw_path")
            if raw_path is not None:
                scope["raw_path"] = b"/api" + raw_path
        await self.app(scope, receive, send)
