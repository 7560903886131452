"""The routes that forward a validated body unchanged, and those that forward as sent."""

from __future__ import annotations

from grok_proxy.calls.route import PASS_THROUGH, RESPONSES
from grok_proxy.routes.shared import forward_as_is, forward_validated
from grok_proxy.routes.table import Row, passthrough_row
from grok_proxy.schemas.completions import CompletionRequest
from grok_proxy.schemas.documents import DocumentSearchRequest
from grok_proxy.schemas.embeddings import EmbeddingRequest
from grok_proxy.schemas.responses import ResponsesRequest
from grok_proxy.schemas.tokenize import TokenizeRequest

TOKENIZE = "xAI's `token_ids` (token_id, string_token, token_bytes) as returned."

ROWS = [
    Row("POST", "/responses", forward_validated, RESPONSES, ResponsesRequest, tag="responses",
        summary="Create a response (xAI /v1/responses)",
        description="xAI's recommended API; streams its events with `\"stream\": true`."),
    Row("GET", "/responses/{response_id}", forward_as_is, PASS_THROUGH, tag="responses",
        summary="Retrieve a stored response", description="Forwarded as sent."),
    Row("DELETE", "/responses/{response_id}", forward_as_is, PASS_THROUGH, tag="responses",
        summary="Delete a stored response", description="Forwarded as sent."),
    Row("POST", "/completions", forward_validated, schema=CompletionRequest, tag="completions",
        summary="Legacy text completion (xAI /v1/completions)", description="Plain or streamed."),
    Row("POST", "/embeddings", forward_validated, schema=EmbeddingRequest, tag="embeddings",
        summary="Create embeddings (xAI /v1/embeddings)",
        description="Embedding vectors for the input."),
    Row("POST", "/tokenize-text", forward_validated, schema=TokenizeRequest, tag="tokenize",
        summary="Tokenize text (xAI /v1/tokenize-text)", description=TOKENIZE),
    Row("POST", "/tokenize", forward_validated, schema=TokenizeRequest, tag="tokenize",
        upstream="/tokenize-text", summary="Tokenize text (alias of /tokenize-text)",
        description=TOKENIZE),
    Row("POST", "/documents/search", forward_validated, schema=DocumentSearchRequest,
        tag="documents", summary="Search document collections (xAI /v1/documents/search)",
        description="Ranked chunks of the named collections that match the query."),
    Row("GET", "/models", forward_as_is, PASS_THROUGH, tag="models",
        summary="List models (xAI /v1/models)",
        description='OpenAI-style `{"object": "list", "data": [...]}`.'),
    Row("GET", "/models/{model_id}", forward_as_is, PASS_THROUGH, tag="models",
        summary="Retrieve a model; 404 when unknown", description="One model, or xAI's 404."),
]  # fmt: skip

PASSTHROUGH_DESCRIPTION = (
    "Method, path, query string and body go to the same path at xAI; status, body and "
    "streams come back as xAI sent them. Covers /language-models, /image-generation-models, "
    "/api-key, /images/edits, /files, /batches and routes xAI adds later."
)

PASSTHROUGH = passthrough_row(forward_as_is)
