"""Caller authentication: which key a caller presented, and which key goes upstream.

Protocol-neutral on purpose: HTTP routes, the WebSocket relay and the gRPC relay each pull
the presented key out of their own framing (a header, a subprotocol, call metadata) and
ask `CallerAuth` the same question. Nothing here knows about Starlette or grpc.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from grok_proxy.config import Settings
from grok_proxy.errors import MissingApiKey
from grok_proxy.logs import key_fingerprint


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
    """Pure pass-through of the caller's own key, or access keys swapped for the server's."""

    def __init__(self, settings: Settings) -> None:
        self.access_keys = tuple(key.encode() for key in settings.access_keys())
        self.server_key = settings.xai_api_key.get_secret_value() if settings.xai_api_key else ""

    @property
    def shared(self) -> bool:
        """Whether callers present access keys (and the server's key goes upstream)."""
        return bool(self.access_keys)

    def admit(self, presented: str | None, *, where: str) -> Caller:
        """The caller behind `presented`; 401 when it is missing or not an access key.

        `where` names how the key should have been sent, for the error message.
        """
        if not presented:
            raise MissingApiKey(f"No API key provided. Send your xAI API key in {where}.")
        fingerprint = key_fingerprint(presented)
        if not self.access_keys:
            return Caller(presented, fingerprint)
        candidate = presented.encode()
        # Compare against every key, each in constant time: no timing hint which one is near.
        matched = False
        for key in self.access_keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise MissingApiKey(
                "The API key is not one of this proxy's access keys.", code="invalid_api_key"
            )
        return Caller(self.server_key, fingerprint)
