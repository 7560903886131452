"""The routes that forward a validated body unchanged, and those that forward as sent."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.errors import Flavor
from grok_proxy.routes.shared import (
    ANTHROPIC_DONE,
    RESPONSES_DONE,
    area_router,
    forward_as_is,
    forward_validated,
    request_body,
)
from grok_proxy.schemas.completions import CompletionRequest
from grok_proxy.schemas.embeddings import EmbeddingRequest
from grok_proxy.schemas.messages import MessagesRequest
from grok_proxy.schemas.responses import ResponsesRequest
from grok_proxy.schemas.tokenize import TokenizeRequest

router = area_router()


@router.post(
    "/completions",
    tags=["completions"],
    summary="Legacy text completion (xAI /v1/completions)",
    openapi_extra=request_body(CompletionRequest),
)
async def completions(request: Request) -> Response:
    """Text completion, plain or streamed."""
    return await forward_validated(request, "/completions", CompletionRequest)


@router.post(
    "/embeddings",
    tags=["embeddings"],
    summary="Create embeddings (xAI /v1/embeddings)",
    openapi_extra=request_body(EmbeddingRequest),
)
async def embeddings(request: Request) -> Response:
    """Embedding vectors for the input."""
    return await forward_validated(request, "/embeddings", EmbeddingRequest)


@router.post(
    "/tokenize-text",
    tags=["tokenize"],
    summary="Tokenize text (xAI /v1/tokenize-text)",
    openapi_extra=request_body(TokenizeRequest),
)
@router.post(
    "/tokenize",
    tags=["tokenize"],
    summary="Tokenize text (alias of /tokenize-text)",
    openapi_extra=request_body(TokenizeRequest),
)
async def tokenize(request: Request) -> Response:
    """xAI's `token_ids` (token_id, string_token, token_bytes) as returned."""
    return await forward_validated(request, "/tokenize-text", TokenizeRequest)


@router.post(
    "/messages",
    tags=["messages"],
    summary="Anthropic-compatible Messages (xAI /v1/messages)",
    openapi_extra=request_body(MessagesRequest),
)
async def messages(request: Request) -> Response:
    """Takes `x-api-key` or Bearer; errors and stream errors use Anthropic's envelope."""
    return await forward_validated(
        request, "/messages", MessagesRequest, flavor=Flavor.ANTHROPIC, done_markers=ANTHROPIC_DONE
    )


@router.post(
    "/responses",
    tags=["responses"],
    summary="Create a response (xAI /v1/responses)",
    openapi_extra=request_body(ResponsesRequest),
)
async def create_response(request: Request) -> Response:
    """xAI's recommended API; streams its events with `"stream": true`."""
    return await forward_validated(
        request, "/responses", ResponsesRequest, done_markers=RESPONSES_DONE
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
