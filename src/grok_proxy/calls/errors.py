"""The proxy's exceptions and the two error envelopes it speaks.

Exception tree::

    ProxyError                  any failure answered with an error envelope
    ├── MissingApiKey           401, no key on the request; nothing was sent upstream
    ├── InvalidRequest          400, body is not JSON or is not usable
    │   └── CallerGone          the caller hung up while sending; nobody reads the answer
    ├── ValidationFailed        422, body JSON does not match the route's schema
    ├── PayloadTooLarge         413, body over `max_body_bytes`
    ├── UpstreamError           upstream answered 4xx/5xx; keeps its status and message
    ├── NotOnThisUpstream       501, the configured access point has no such route
    ├── UpstreamUnreachable     502, no connection, or it was dropped before an answer
    └── UpstreamTimeout         504, upstream did not answer in time
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from http import HTTPStatus
from typing import Any

import orjson

from grok_proxy.calls.asgi import Send
from grok_proxy.calls.redact import redact
from grok_proxy.calls.reply import send_json


class Flavor(Enum):
    """Which SDK's error envelope a route answers in."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


# Scope key: the envelope this request's errors use, decided once by the serving layer
# (routes.table.RouteTable.flavor) and read by everything that answers with an error.
FLAVOR = "grok_proxy.flavor"


def flavor_in(scope: Mapping[str, Any]) -> Flavor:
    """The envelope of this request's errors (OpenAI's before the serving layer decided)."""
    flavor = scope.get(FLAVOR, Flavor.OPENAI)
    assert isinstance(flavor, Flavor)
    return flavor


# One table serves both envelopes: Anthropic's error types are also what OpenAI clients expect.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """The envelope `type` for an HTTP status."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class ProxyError(Exception):
    """A failure answered to the caller with an error envelope."""

    status: int = 500
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        # Response headers that go with the error (e.g. how many attempts were made).
        self.headers: dict[str, str] = {}
        if code is not None:
            self.code = code

    def envelope(self, flavor: Flavor) -> dict[str, Any]:
        """This error in the caller's envelope."""
        return error_envelope(flavor, self.status, self.message, param=self.param, code=self.code)


class MissingApiKey(ProxyError):
    status = 401
    code = "missing_api_key"


class InvalidRequest(ProxyError):
    status = 400
    code = "invalid_request"


class CallerGone(InvalidRequest):
    code = "caller_gone"


class ValidationFailed(ProxyError):
    status = 422
    code = "invalid_value"


class PayloadTooLarge(ProxyError):
    status = 413
    code = "request_too_large"


class UpstreamUnreachable(ProxyError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(ProxyError):
    status = 504
    code = "upstream_timeout"


class NotOnThisUpstream(ProxyError):
    """501: the configured access point has no such route."""

    status = 501
    code = "route_not_on_upstream"


class UpstreamError(ProxyError):
    """Upstream answered an error: its status, and its message where it gave one."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


def error_envelope(
    flavor: Flavor,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's `{"error": {...}}` or Anthropic's `{"type": "error", "error": {...}}`."""
    kind = error_type(status)
    if flavor is Flavor.ANTHROPIC:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def upstream_error(
    status: int, body: bytes, content_type: str, *, caller_key: str | None = None
) -> UpstreamError:
    """Read the reason out of an upstream error body, whatever shape it came in.

    xAI sends `{"code": "...", "error": "..."}`; OpenAI-style providers send
    `{"error": {"message": ...}}`; a CDN in between may send an HTML page. Secrets are
    redacted from the message (redact.redact); `caller_key`, the key the caller sent, may stay.
    """
    error = _upstream_error(status, body, content_type)
    error.message = redact(error.message, caller_key)
    error.args = (error.message,)
    if error.code is not None:
        error.code = redact(error.code, caller_key)
    return error


def _upstream_error(status: int, body: bytes, content_type: str) -> UpstreamError:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        code = data.get("code")
        code = code if isinstance(code, str) else None
        if isinstance(error, str) and error:
            return UpstreamError(status, error, code=code)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            inner_code = error.get("code")
            return UpstreamError(
                status,
                error["message"],
                code=inner_code if isinstance(inner_code, str) else code,
            )
        if isinstance(data.get("message"), str):
            return UpstreamError(status, data["message"], code=code)
        if code:
            return UpstreamError(status, code, code=code)
    kind = content_type.split(";", 1)[0].strip() or "no content type"
    detail = f"{len(body)} bytes of {kind}" if body else "an empty body"
    return UpstreamError(status, f"Upstream answered {status} {reason} with {detail}.")


async def send_error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer with the OpenAI envelope straight from the serving layer (before any route)."""
    body = orjson.dumps(error_envelope(Flavor.OPENAI, status, message, code=code))
    await send_json(send, status, body, headers)


def envelope_bytes(flavor: Flavor, error: ProxyError) -> bytes:
    """The JSON body for an error response."""
    return orjson.dumps(error.envelope(flavor))
