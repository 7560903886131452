"""Anthropic-style routes besides /messages: they take `x-api-key` and answer in its envelope."""

from __future__ import annotations

from grok_proxy.route import MESSAGES
from grok_proxy.routes.shared import add_validated_route, area_router
from grok_proxy.schemas.messages import CountTokensRequest

router = area_router("messages")

add_validated_route(
    router,
    "/messages/count_tokens",
    CountTokensRequest,
    summary="Count a Messages request's input tokens (xAI /v1/messages/count_tokens)",
    description="Takes `x-api-key` or Bearer; errors come in Anthropic's envelope.",
    route=MESSAGES,
)
