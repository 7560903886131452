"""What every route does before forwarding: find the caller, read and validate the body."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.auth import Caller, bearer_token
from grok_proxy.bodies import (
    PARSED_BODY,
    StreamedBody,
    is_large,
    parse_elsewhere,
    parse_json,
    read_body,
)
from grok_proxy.errors import Flavor, InvalidRequest, ValidationFailed
from grok_proxy.forwarder import Forwarder, Outgoing
from grok_proxy.middleware import API_PREFIX
from grok_proxy.record import record_of
from grok_proxy.route import CHAT, PASS_THROUGH, JsonHook, Route

M = TypeVar("M", bound=BaseModel)


# A validated body is JSON whatever the caller labelled it (curl -d sends a form type).
JSON_BODY = {"content-type": "application/json"}

# Models whose JSON schema the OpenAPI document must carry (see app.openapi_schema).
DOCUMENTED_MODELS: dict[str, type[BaseModel]] = {}


def forwarder_of(request: Request) -> Forwarder:
    """The worker's forwarder (upstream client and the path through it)."""
    forwarder: Forwarder = request.app.state.forwarder
    return forwarder


def authorized(request: Request, *, allow_x_api_key: bool = False) -> Caller:
    """The caller behind the request's key (401 when missing or not allowed)."""
    presented = bearer_token(request.headers.get("authorization", ""))
    where = "an `Authorization: Bearer <key>` header"
    if allow_x_api_key:
        presented = presented or request.headers.get("x-api-key", "").strip()
        where += " or an `x-api-key` header"
    caller = forwarder_of(request).auth.admit(presented, where=where)
    record_of(request.scope).key_fingerprint = caller.fingerprint
    return caller


async def validated_body(request: Request, schema: type[M]) -> tuple[bytes, M]:
    """The raw body (to forward as sent) and its validated model (to decide with)."""
    body, _, parsed = await validated_json(request, schema)
    return body, parsed


async def validated_json(request: Request, schema: type[M]) -> tuple[bytes, Any, M]:
    """The raw body, its JSON value and its validated model, from one parse.

    In a shared proxy the team gate has parsed the body already (to check the member's
    objects and models on the value the route will use): that value is validated here.
    """
    limit = forwarder_of(request).settings.max_body_bytes
    body = await read_body(request.receive, limit, request.headers.get("content-length"))
    held = request.scope.get(PARSED_BODY)
    if held is not None and held[0] is body:
        data = held[1]
    elif not body.strip():
        raise InvalidRequest("Request body is empty; send a JSON object.")
    elif is_large(body):
        # Parsed and validated in a parser process, so other callers are not held up; only
        # the (small) validated model comes back, and no JSON value (forward_validated).
        parsed = await parse_elsewhere(body, partial(validate, schema=schema))
        return body, None, _recorded(request, parsed)
    else:
        data = parse_json(body)
    return body, data, _recorded(request, validate(data, schema))


def _recorded(request: Request, parsed: M) -> M:
    """The validated body, its model noted on the request's record."""
    model = getattr(parsed, "model", None)
    if isinstance(model, str):
        record_of(request.scope).model = model
    return parsed


def parse_body(body: bytes, schema: type[M]) -> M:
    """Validate a JSON body, naming the first offending field in the error."""
    if not body.strip():
        raise InvalidRequest("Request body is empty; send a JSON object.")
    return validate(parse_json(body), schema)


def validate(data: Any, schema: type[M]) -> M:
    """Validate a parsed JSON body, naming the first offending field in the error."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False), data) from None


def validation_error(
    errors: list[ErrorDetails], data: Any = None
) -> InvalidRequest | ValidationFailed:
    """One clear message for pydantic's errors; malformed JSON is a 400, bad values a 422."""
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return InvalidRequest(f"Request body is not valid JSON: {reason}.", code="invalid_json")
    if first["type"] == "model_type" and not first["loc"]:
        return ValidationFailed("Request body must be a JSON object.")
    located = [(json_path(data, _loc(error)), error["msg"]) for error in errors]
    # For a union, pydantic reports every member's complaint; the deepest is the useful one.
    located.sort(key=lambda item: -item[0].count("."))
    unique = list(dict.fromkeys(f"{path}: {msg}" if path else msg for path, msg in located))
    more = f" (and {len(unique) - 3} more)" if len(unique) > 3 else ""
    return ValidationFailed("; ".join(unique[:3]) + more, param=located[0][0] or None)


def _loc(error: ErrorDetails) -> tuple[int | str, ...]:
    # A bad discriminator ("role": "bot") is reported on its object; name the field itself.
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return (*error["loc"], str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    return error["loc"]


def json_path(data: Any, loc: tuple[int | str, ...]) -> str:
    """The path of an error in the caller's JSON, without pydantic's union and tag labels."""
    parts: list[str] = []
    last = len(loc) - 1
    for index, part in enumerate(loc):
        if isinstance(data, dict) and (part in data or index == last):
            data = data.get(part)  # a field, or at the end a missing field to name
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            continue  # a union member or discriminator tag, not a place in the JSON
        parts.append(str(part))
    return ".".join(parts)


async def forward_validated(
    request: Request, target: str, schema: type[BaseModel], route: Route
) -> Response:
    """Check the key, validate the JSON body, then forward the caller's bytes unchanged."""
    forwarder = forwarder_of(request)
    caller = authorized(request, allow_x_api_key=route.flavor is Flavor.ANTHROPIC)
    body, data, parsed = await validated_json(request, schema)
    strip_usage = False
    wants_usage = forwarder.settings.capture_stream_usage or getattr(caller, "wants_usage", False)
    if wants_usage and _streams_without_usage(parsed):
        # Ask xAI for the usage chunk so metrics are complete; the relay removes it again,
        # so the caller receives exactly the stream it asked for.
        asked = await parse_elsewhere(body, usage_asked) if data is None else usage_asked(data)
        if asked is not None:  # integers past 64 bits: as sent
            body, strip_usage = asked, True
    outgoing = Outgoing(target, body, JSON_BODY, strip_usage=strip_usage)
    return await forwarder.forward(request, route, caller, outgoing)


def usage_asked(data: Any) -> bytes | None:
    """The body rewritten to ask for the usage chunk; None when it cannot be written out."""
    options = {**(data.get("stream_options") or {}), "include_usage": True}
    try:
        return orjson.dumps({**data, "stream_options": options})
    except orjson.JSONEncodeError:
        return None


def add_validated_route(
    router: APIRouter,
    path: str,
    schema: type[BaseModel],
    *,
    summary: str,
    description: str,
    tag: str | None = None,
    upstream_path: str | None = None,
    route: Route = CHAT,
) -> None:
    """A POST route that validates its body with `schema` and forwards it unchanged."""
    target = upstream_path or path

    async def endpoint(request: Request) -> Response:
        return await forward_validated(request, target, schema, route)

    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=path.strip("/").replace("/", "_").replace("-", "_"),
        summary=summary,
        description=description,
        tags=[tag] if tag else None,
        openapi_extra=request_body(schema),
    )


def _streams_without_usage(parsed: BaseModel) -> bool:
    """A chat/text completion stream that did not ask for the usage chunk."""
    if not getattr(parsed, "stream", False) or not hasattr(parsed, "stream_options"):
        return False
    options = parsed.stream_options
    return options is None or not options.include_usage


async def forward_translated(
    request: Request, target: str, *, caller: Caller, body: bytes, on_json: JsonHook | None = None
) -> Response:
    """Forward a body the route built (a translation); `on_json` rewrites the answer."""
    outgoing = Outgoing(target, body, JSON_BODY, on_json=on_json)
    return await forwarder_of(request).forward(request, CHAT, caller, outgoing)


async def forward_as_is(request: Request, route: Route = PASS_THROUGH) -> Response:
    """Forward a request to the same path upstream: method, query string and body as sent.

    The body streams upstream as it arrives, and the answer streams back, so file uploads
    and downloads cost no memory. A JSON body is read whole only where a preset must
    rewrite its model name. A `route` that reads answers gets their usage read.
    """
    caller = authorized(request)
    forwarder = forwarder_of(request)
    limit = forwarder.settings.max_body_bytes
    target = upstream_path(request)
    if request.url.query:
        target = f"{target}?{request.url.query}"
    length = request.headers.get("content-length")
    headers = {"content-length": length} if length is not None else {}
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS") and not length:
        outgoing = Outgoing(target, None, headers)
    elif not forwarder.models.identity and "json" in request.headers.get("content-type", ""):
        body = await read_body(request.receive, limit, length)
        outgoing = Outgoing(target, body, {})
    else:
        streamed = StreamedBody(request.receive, limit, length)
        outgoing = Outgoing(target, streamed.chunks(), headers, streamed=streamed)
    return await forwarder.forward(request, route, caller, outgoing)


def upstream_path(request: Request) -> str:
    """The request's path below the API prefix, still percent-encoded as the caller sent it."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    return raw.decode("latin-1").removeprefix(API_PREFIX)


class LeanRoute(APIRoute):
    """An APIRoute that calls its endpoint with the request and path parameters, nothing else.

    The endpoints read and validate bodies themselves (to forward the exact bytes), so
    FastAPI's per-request dependency solving would only cost time. OpenAPI still comes
    from the endpoint's signature and `openapi_extra`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        template = self.path

        async def handler(request: Request) -> Response:
            record_of(request.scope).route = template
            response: Response = await endpoint(request, **request.path_params)
            return response

        return handler


def area_router(*tags: str) -> APIRouter:
    """The router of one area of the API, mounted at API_PREFIX."""
    return APIRouter(prefix=API_PREFIX, tags=list(tags), route_class=LeanRoute)


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
