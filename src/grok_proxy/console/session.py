"""The console's session: the admin token exchanged for a signed, HttpOnly cookie.

Stateless, so every worker and replica accepts it: the cookie holds an expiry, a random
nonce and an HMAC of both under a key derived from the admin token (changing the token
ends every session). The CSRF token is a second HMAC of the nonce: the page reads it once
from /console/session and sends it back in a header, which a cross-site form cannot do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request

COOKIE = "grok_proxy_console"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD"})


class Sessions:
    """Issues and checks console sessions for one admin token."""

    def __init__(self, admin_token: str) -> None:
        self.admin_token = admin_token.encode()
        self.key = hashlib.sha256(b"grok-proxy console session\0" + self.admin_token).digest()

    def token_matches(self, presented: str) -> bool:
        """Whether `presented` is the admin token (in constant time)."""
        return hmac.compare_digest(presented.encode(), self.admin_token)

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value."""
        expires = int((now or time.time()) + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(18)
        return f"{expires}.{nonce}.{self._mac('session', f'{expires}.{nonce}')}"

    def nonce_of(self, cookie: str | None, now: float | None = None) -> str | None:
        """The nonce of a valid, unexpired session cookie, else None."""
        if not cookie:
            return None
        expires, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expires.isdigit() and nonce and mac):
            return None
        if not hmac.compare_digest(mac, self._mac("session", f"{expires}.{nonce}")):
            return None
        if int(expires) < (now or time.time()):
            return None
        return nonce

    def csrf_for(self, nonce: str) -> str:
        """The CSRF token that goes with the session whose nonce this is."""
        return self._mac("csrf", nonce)

    def allows(self, request: Request) -> bool:
        """Whether the request carries a valid session and, unless it only reads, its CSRF
        token from a page of this origin."""
        nonce = self.nonce_of(request.cookies.get(COOKIE))
        if nonce is None:
            return False
        if request.method in SAFE_METHODS:
            return True
        presented = request.headers.get(CSRF_HEADER, "")
        return same_origin(request) and hmac.compare_digest(presented, self.csrf_for(nonce))

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site.

    Sec-Fetch-Site (sent by every current browser) decides when present: it survives a
    reverse proxy that rewrites Host. Otherwise Origin must name this host. A client that
    sends neither (curl) is not a browser an attacker's page could drive.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in {"same-origin", "none"}
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in {f"http://{host}", f"https://{host}"}
