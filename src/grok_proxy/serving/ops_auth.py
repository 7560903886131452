"""Operational routes (/metrics, /docs, /openapi.json, /health?upstream=1) behind a token.

In a shared deployment (access keys, or members in a team database) these routes would tell
anyone the traffic (every member's requests and cost), the API surface and the upstream, and
let them make the proxy call upstream. They then need GROK_PROXY_OPS_TOKEN or, while that is
unset, an access key of GROK_PROXY_API_KEYS or the admin token; with none of these set they
are closed. GROK_PROXY_OPS_TOKEN alone also closes them in pass-through mode. The token
comes as `Authorization: Bearer` (Prometheus' `authorization`) or as the password of Basic
auth (a browser's prompt, for /docs). Plain /health stays open for liveness probes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import parse_qs

from starlette.types import Scope, Send

from grok_proxy.calls.auth import bearer_token
from grok_proxy.calls.errors import send_error
from grok_proxy.config import Settings

OPS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
HEALTH_PATHS = frozenset({"/health", "/api/v1/health", "/v1/health"})
UPSTREAM_CHECK = frozenset({"1", "true", "yes"})
CHALLENGE = b'Basic realm="grok-proxy operations", Bearer'


def ops_tokens(settings: Settings, *, shared: bool = False) -> tuple[bytes, ...]:
    """The tokens that open the operational routes (GROK_PROXY_OPS_TOKEN; else the access
    keys of GROK_PROXY_API_KEYS and, on a shared proxy, the admin token)."""
    if settings.access.ops_token is not None:
        return (settings.access.ops_token.get_secret_value().encode(),)
    tokens = [key.encode() for key in settings.access.api_keys]
    if shared and settings.teams.admin_token is not None:
        tokens.append(settings.teams.admin_token.get_secret_value().encode())
    return tuple(tokens)


def presented_token(authorization: str) -> str | None:
    """A Bearer token, or the password of Basic credentials."""
    token = bearer_token(authorization)
    if token is not None:
        return token
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def is_operational(scope: Scope) -> bool:
    """Whether the request is for an operational route."""
    path: str = scope["path"]
    if path in OPS_PATHS:
        return True
    if path in HEALTH_PATHS:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(value in UPSTREAM_CHECK for value in query.get("upstream", []))
    return False


class OpsGuard:
    """Whether a request may use an operational route: 401 without a valid token."""

    def __init__(self, settings: Settings, *, shared: bool = False) -> None:
        self.tokens = ops_tokens(settings, shared=shared)
        # A shared proxy (members in a database too) closes them even with no token to open
        # them: /metrics names every member's requests and cost.
        self.guarded = shared or bool(self.tokens)

    def admits(self, scope: Scope) -> bool:
        """False for an operational route without a valid token (when they are guarded)."""
        if not self.guarded or not is_operational(scope):
            return True
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        token = presented_token(authorization)
        return token is not None and self._valid(token.encode("utf-8", "replace"))

    async def refuse(self, send: Send) -> None:
        """The 401 answer, with the challenge a browser or Prometheus understands."""
        await _refuse(send)

    def _valid(self, candidate: bytes) -> bool:
        # Compared with every token in constant time: no timing hint which one is near.
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched


async def _refuse(send: Send) -> None:
    message = (
        "This operational route needs GROK_PROXY_OPS_TOKEN (or, while that is unset, an "
        "access key of GROK_PROXY_API_KEYS or the admin token) as a Bearer token or the "
        "password of Basic auth."
    )
    await send_error(
        send,
        401,
        message,
        code="ops_token_required",
        headers=((b"www-authenticate", CHALLENGE),),
    )
