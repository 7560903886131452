"""The HTTP adapter: what every route does before forwarding, and the handlers of the rows.

A row's handler finds the caller, reads and validates the body, builds the `Call` and
hands it to the forwarder; the answer comes back as an ASGI callable.
"""

from __future__ import annotations

import inspect
import re
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
from starlette.types import Scope

from grok_proxy.calls.auth import ADMITTED, Caller, bearer_token
from grok_proxy.calls.bodies import (
    PARSED_BODY,
    StreamedBody,
    is_large,
    parse_elsewhere,
    parse_json,
    read_body,
)
from grok_proxy.calls.errors import Flavor, InvalidRequest, ValidationFailed
from grok_proxy.calls.forwarder import Call, Forwarder
from grok_proxy.calls.record import record_of
from grok_proxy.calls.reply import Answer
from grok_proxy.calls.route import CHAT, JsonHook, Route
from grok_proxy.calls.transport import Body
from grok_proxy.routes.table import API_PREFIX, Row, documented_body

M = TypeVar("M", bound=BaseModel)


# A validated body is JSON whatever the caller labelled it (curl -d sends a form type).
JSON_BODY = {"content-type": "application/json"}

# Models whose JSON schema the OpenAPI document must carry (see app.openapi_schema).
DOCUMENTED_MODELS: dict[str, type[BaseModel]] = {}


def authorized(request: Request, forwarder: Forwarder, *, allow_x_api_key: bool = False) -> Caller:
    """The caller behind the request's key (401 when missing or not allowed).

    A policy in front of the routes (the team gate) may have admitted the caller already:
    the key is then not checked a second time.
    """
    caller = request.scope.get(ADMITTED)
    if caller is None:
        presented = bearer_token(request.headers.get("authorization", ""))
        where = "an `Authorization: Bearer <key>` header"
        if allow_x_api_key:
            presented = presented or request.headers.get("x-api-key", "").strip()
            where += " or an `x-api-key` header"
        caller = forwarder.auth.admit(presented, where=where)
    assert isinstance(caller, Caller)
    record_of(request.scope).key_fingerprint = caller.fingerprint
    return caller


async def validated_body(
    request: Request, forwarder: Forwarder, schema: type[M]
) -> tuple[bytes, M]:
    """The raw body (to forward as sent) and its validated model (to decide with)."""
    body, _, parsed = await validated_json(request, forwarder, schema)
    return body, parsed


async def validated_json(
    request: Request, forwarder: Forwarder, schema: type[M]
) -> tuple[bytes, Any, M]:
    """The raw body, its JSON value and its validated model, from one parse.

    In a shared proxy the team gate has parsed the body already (to check the member's
    objects and models on the value the route will use): that value is validated here.
    """
    limit = forwarder.settings.limits.max_body_bytes
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


def call_for(
    request: Request,
    route: Route,
    caller: Caller,
    target: str,
    *,
    body: Body,
    headers: dict[str, str],
) -> Call:
    """The call this request makes upstream."""
    scope = request.scope
    return Call(
        scope["method"], target, caller, route, record_of(scope), scope["headers"], body, headers
    )


async def forward_validated(request: Request, row: Row, forwarder: Forwarder) -> Answer:
    """Check the key, validate the JSON body, then forward the caller's bytes unchanged."""
    assert row.schema is not None
    caller = authorized(request, forwarder, allow_x_api_key=row.route.flavor is Flavor.ANTHROPIC)
    body, data, parsed = await validated_json(request, forwarder, row.schema)
    call = call_for(request, row.route, caller, row.target, body=body, headers=JSON_BODY)
    wants_usage = forwarder.settings.calls.capture_stream_usage or getattr(
        caller, "wants_usage", False
    )
    if wants_usage and _streams_without_usage(parsed):
        # Ask xAI for the usage chunk so metrics are complete; the relay removes it again,
        # so the caller receives exactly the stream it asked for.
        asked = await parse_elsewhere(body, usage_asked) if data is None else usage_asked(data)
        if asked is not None:  # integers past 64 bits: as sent
            call.body, call.strip_usage = asked, True
    return await forwarder.forward(call, request.receive)


def usage_asked(data: Any) -> bytes | None:
    """The body rewritten to ask for the usage chunk; None when it cannot be written out."""
    options = {**(data.get("stream_options") or {}), "include_usage": True}
    try:
        return orjson.dumps({**data, "stream_options": options})
    except orjson.JSONEncodeError:
        return None


def _streams_without_usage(parsed: BaseModel) -> bool:
    """A chat/text completion stream that did not ask for the usage chunk."""
    if not getattr(parsed, "stream", False) or not hasattr(parsed, "stream_options"):
        return False
    options = parsed.stream_options
    return options is None or not options.include_usage


async def forward_translated(
    request: Request,
    forwarder: Forwarder,
    target: str,
    *,
    caller: Caller,
    body: bytes,
    on_json: JsonHook | None = None,
) -> Answer:
    """Forward a body the route built (a translation); `on_json` rewrites the answer."""
    call = call_for(request, CHAT, caller, target, body=body, headers=JSON_BODY)
    call.on_json = on_json
    return await forwarder.forward(call, request.receive)


async def forward_as_is(request: Request, row: Row, forwarder: Forwarder) -> Answer:
    """Forward a request to the same path upstream: method, query string and body as sent.

    The body streams upstream as it arrives, and the answer streams back, so file uploads
    and downloads cost no memory. A JSON body is read whole only where a preset must
    rewrite its model name. A row whose route reads answers gets their usage read.
    """
    caller = authorized(request, forwarder)
    limit = forwarder.settings.limits.max_body_bytes
    scope = request.scope
    target = upstream_path(scope)
    query: bytes = scope.get("query_string", b"")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    length = request.headers.get("content-length")
    headers = {"content-length": length} if length is not None else {}
    method = scope["method"]
    if method in ("GET", "HEAD", "DELETE", "OPTIONS") and not length:
        call = call_for(request, row.route, caller, target, body=None, headers=headers)
    elif not forwarder.models.identity and "json" in request.headers.get("content-type", ""):
        body = await read_body(request.receive, limit, length)
        call = call_for(request, row.route, caller, target, body=body, headers={})
    else:
        streamed = StreamedBody(request.receive, limit, length)
        call = call_for(request, row.route, caller, target, body=streamed.chunks(), headers=headers)
        call.streamed = streamed
    return await forwarder.forward(call, request.receive)


def upstream_path(scope: Scope) -> str:
    """The request's path below the API prefix, still percent-encoded as the caller sent it."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.decode("latin-1").removeprefix(API_PREFIX)


class LeanRoute(APIRoute):
    """An APIRoute that calls its endpoint with the request and path parameters, nothing else.

    FastAPI's per-request dependency solving would only cost time: the endpoints read what
    they need themselves. OpenAPI still comes from the endpoint's signature and
    `openapi_extra`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        template = self.path

        async def handler(request: Request) -> Response:
            record_of(request.scope).route = template
            response: Response = await endpoint(request, **request.path_params)
            return response

        return handler


def documented(router: APIRouter, row: Row, *, name: str | None = None) -> None:
    """Put a row on FastAPI's router: OpenAPI documents it, and FastAPI could serve it.

    The entry (entry.py) serves every row itself; FastAPI's copy is the documentation.
    """

    async def endpoint(request: Request, **_: str) -> Answer:
        return await row.handler(request, row, request.app.state.forwarder)

    # FastAPI documents path parameters from the endpoint's signature.
    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str)
        for name in re.findall(r"\{(\w+)(?::path)?\}", row.path)
    ]
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    extra = None
    if row.schema is not None:
        DOCUMENTED_MODELS[row.schema.__name__] = row.schema
        extra = documented_body(row.schema)
    router.add_api_route(
        row.template,
        endpoint,
        methods=[row.method],
        name=name or row.path.strip("/").replace("/", "_").replace("-", "_"),
        summary=row.summary or None,
        description=row.description,
        tags=[row.tag] if row.tag else None,
        openapi_extra=extra,
    )


def area_router(*tags: str) -> APIRouter:
    """A router of routes that FastAPI serves itself (health, metrics)."""
    return APIRouter(tags=list(tags), route_class=LeanRoute)
