"""POST /chat/completions and GET /chat/deferred-completion/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.route import ANY_END, Route
from grok_proxy.routes.shared import add_validated_route, area_router, forward_as_is
from grok_proxy.schemas.chat import ChatCompletionRequest

# Forwarded as sent, its JSON answer read for the usage (and cost) xAI bills with it.
BILLED_ANSWER = Route(stream_end=ANY_END)

router = area_router("chat")

add_validated_route(
    router,
    "/chat/completions",
    ChatCompletionRequest,
    summary="Create a chat completion (xAI /v1/chat/completions)",
    description='Chat completion; with `"stream": true` the SSE stream is relayed as it arrives.',
)


@router.get(
    "/chat/deferred-completion/{request_id}",
    summary="Fetch a deferred chat completion (202 with an empty body while pending)",
)
async def deferred_completion(request: Request, request_id: str) -> Response:
    """The result of a `"deferred": true` chat request, once, within 24 hours.

    Its usage is read here: this is where a deferred completion's cost becomes known.
    """
    return await forward_as_is(request, BILLED_ANSWER)
