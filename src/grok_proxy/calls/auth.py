"""Caller authentication: which key a caller presented, and which key goes upstream.

Protocol-neutral on purpose: HTTP routes, the WebSocket relay and the gRPC relay each pull
the presented key out of their own framing (a header, a subprotocol, call metadata) and
ask `CallerAuth` the same question. Nothing here knows about Starlette or grpc.
"""

from __future__ import annotations

from dataclasses import dataclass

from grok_proxy.calls.errors import MissingApiKey
from grok_proxy.calls.redact import key_fingerprint
from grok_proxy.config import Settings

# Scope key: the Caller a policy in front of the routes admitted (checked once per request).
ADMITTED = "grok_proxy.caller"


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (None when it is not one)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return token
    return None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key to send upstream and a fingerprint that is safe to log."""

    upstream_key: str
    fingerprint: str


class CallerAuth:
    """The caller's own key, passed through: the proxy of one user (or of a team's members,
    whose policy, teams.team.TeamAuth, swaps member keys for the account's)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def admit(self, presented: str | None, *, where: str) -> Caller:
        """The caller behind `presented`; 401 when it is missing.

        `where` names how the key should have been sent, for the error message.
        """
        if not presented:
            raise MissingApiKey(f"No API key provided. Send your xAI API key in {where}.")
        return Caller(presented, key_fingerprint(presented))
