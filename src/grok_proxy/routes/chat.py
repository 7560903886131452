"""POST /chat/completions: validated, then forwarded byte for byte, plain or streaming."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.routes.shared import JSON_BODY, request_body, upstream_of, validated_body
from grok_proxy.schemas.chat import ChatCompletionRequest
from grok_proxy.upstream import caller_key

router = APIRouter(tags=["chat"])

# What a complete chat completion stream ends with.
OPENAI_DONE = b"data: [DONE]"


@router.post(
    "/chat/completions",
    summary="Create a chat completion (xAI /v1/chat/completions)",
    openapi_extra=request_body(ChatCompletionRequest),
)
async def chat_completions(request: Request) -> Response:
    """Chat completion; with `"stream": true` the SSE stream is relayed as it arrives."""
    key = caller_key(request)
    body, _ = await validated_body(request, ChatCompletionRequest)
    return await upstream_of(request).forward(
        request,
        "/chat/completions",
        key=key,
        body=body,
        headers=JSON_BODY,
        done_marker=OPENAI_DONE,
    )
