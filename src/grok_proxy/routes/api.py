"""The routes that forward a validated body unchanged, and those that forward as sent."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.route import CHAT, MESSAGES, RESPONSES, Route
from grok_proxy.routes.shared import add_validated_route, area_router, forward_as_is
from grok_proxy.schemas.completions import CompletionRequest
from grok_proxy.schemas.embeddings import EmbeddingRequest
from grok_proxy.schemas.messages import MessagesRequest
from grok_proxy.schemas.responses import ResponsesRequest
from grok_proxy.schemas.tokenize import TokenizeRequest

router = area_router()


class Validated(NamedTuple):
    """A route whose body is validated, then forwarded byte for byte."""

    path: str
    upstream_path: str
    schema: type[BaseModel]
    tag: str
    summary: str
    description: str
    route: Route = CHAT


TOKENIZE = "xAI's `token_ids` (token_id, string_token, token_bytes) as returned."
VALIDATED_ROUTES = [
    Validated("/completions", "/completions", CompletionRequest, "completions",
              "Legacy text completion (xAI /v1/completions)", "Plain or streamed."),
    Validated("/embeddings", "/embeddings", EmbeddingRequest, "embeddings",
              "Create embeddings (xAI /v1/embeddings)", "Embedding vectors for the input."),
    Validated("/tokenize-text", "/tokenize-text", TokenizeRequest, "tokenize",
              "Tokenize text (xAI /v1/tokenize-text)", TOKENIZE),
    Validated("/tokenize", "/tokenize-text", TokenizeRequest, "tokenize",
              "Tokenize text (alias of /tokenize-text)", TOKENIZE),
    Validated("/responses", "/responses", ResponsesRequest, "responses",
              "Create a response (xAI /v1/responses)",
              "xAI's recommended API; streams its events with `\"stream\": true`.", RESPONSES),
]  # fmt: skip

for route in VALIDATED_ROUTES:
    add_validated_route(
        router,
        route.path,
        route.schema,
        upstream_path=route.upstream_path,
        tag=route.tag,
        summary=route.summary,
        description=route.description,
        route=route.route,
    )

add_validated_route(
    router,
    "/messages",
    MessagesRequest,
    tag="messages",
    summary="Anthropic-compatible Messages (xAI /v1/messages)",
    description="Takes `x-api-key` or Bearer; errors and stream errors use Anthropic's envelope.",
    route=MESSAGES,
)


@router.get("/responses/{response_id}", tags=["responses"], summary="Retrieve a stored response")
@router.delete("/responses/{response_id}", tags=["responses"], summary="Delete a stored response")
async def stored_response(request: Request, response_id: str) -> Response:
    """Forwarded as sent."""
    return await forward_as_is(request)


@router.get("/models", tags=["models"], summary="List models (xAI /v1/models)")
async def list_models(request: Request) -> Response:
    """OpenAI-style `{"object": "list", "data": [...]}`."""
    return await forward_as_is(request)


@router.get("/models/{model_id}", tags=["models"], summary="Retrieve a model; 404 when unknown")
async def retrieve_model(request: Request, model_id: str) -> Response:
    """One model, or xAI's 404."""
    return await forward_as_is(request)


passthrough = area_router("pass-through")


PASSTHROUGH_DESCRIPTION = (
    "Method, path, query string and body go to the same path at xAI; status, body and "
    "streams come back as xAI sent them. Covers /language-models, /image-generation-models, "
    "/api-key, /images/edits, /files, /batches and routes xAI adds later."
)


async def forward_anything(request: Request, path: str) -> Response:
    """Forwarded verbatim, streaming-aware."""
    return await forward_as_is(request)


# One route per method, so each has its own OpenAPI operation.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    passthrough.add_api_route(
        "/{path:path}",
        forward_anything,
        methods=[_method],
        name=f"forward_{_method.lower()}",
        summary=f"Any other xAI route ({_method}), forwarded verbatim",
        description=PASSTHROUGH_DESCRIPTION,
    )
