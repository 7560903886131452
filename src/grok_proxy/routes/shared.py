"""What every route does before forwarding: find the key, read and validate the body."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from grok_proxy.errors import InvalidRequest, ValidationFailed
from grok_proxy.upstream import Upstream, read_body

M = TypeVar("M", bound=BaseModel)

# A validated body is JSON whatever the caller labelled it (curl -d sends a form type).
JSON_BODY = {"content-type": "application/json"}

# Models whose JSON schema the OpenAPI document must carry (see app.openapi_schema).
DOCUMENTED_MODELS: dict[str, type[BaseModel]] = {}


def upstream_of(request: Request) -> Upstream:
    """The worker's shared upstream client."""
    upstream: Upstream = request.app.state.upstream
    return upstream


async def validated_body(request: Request, schema: type[M]) -> tuple[bytes, M]:
    """The raw body (to forward as sent) and its validated model (to decide with)."""
    body = await read_body(request, upstream_of(request).settings.max_body_bytes)
    return body, parse_body(body, schema)


def parse_body(body: bytes, schema: type[M]) -> M:
    """Validate a JSON body, naming the first offending field in the error."""
    if not body.strip():
        raise InvalidRequest("Request body is empty; send a JSON object.")
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None


def validation_error(errors: list[ErrorDetails]) -> InvalidRequest | ValidationFailed:
    """One clear message for pydantic's errors; malformed JSON is a 400, bad values a 422."""
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first["ctx"].get("error", "invalid JSON") if "ctx" in first else "invalid JSON"
        return InvalidRequest(f"Request body is not valid JSON: {reason}.", code="invalid_json")
    if first["type"] == "model_type" and not first["loc"]:
        return ValidationFailed("Request body must be a JSON object.")
    described = [_describe(error) for error in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return ValidationFailed("; ".join(described) + more, param=_path(first["loc"]) or None)


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _describe(error: ErrorDetails) -> str:
    path = _path(error["loc"])
    return f"{path}: {error['msg']}" if path else str(error["msg"])


def request_body(schema: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents a route's JSON body without FastAPI parsing it.

    The routes validate the raw bytes themselves so the exact bytes can be forwarded.
    """
    DOCUMENTED_MODELS[schema.__name__] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}
            },
        }
    }
