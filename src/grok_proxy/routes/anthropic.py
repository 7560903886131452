"""Anthropic-style routes: they take `x-api-key` and answer in Anthropic's envelope."""

from __future__ import annotations

from grok_proxy.calls.route import MESSAGES
from grok_proxy.routes.shared import forward_validated
from grok_proxy.routes.table import Row
from grok_proxy.schemas.messages import CountTokensRequest, MessagesRequest

ROWS = [
    Row("POST", "/messages", forward_validated, MESSAGES, MessagesRequest, tag="messages",
        summary="Anthropic-compatible Messages (xAI /v1/messages)",
        description="Takes `x-api-key` or Bearer; errors and stream errors use Anthropic's "
        "envelope."),
    Row("POST", "/messages/count_tokens", forward_validated, MESSAGES, CountTokensRequest,
        tag="messages",
        summary="Count a Messages request's input tokens (xAI /v1/messages/count_tokens)",
        description="Takes `x-api-key` or Bearer; errors come in Anthropic's envelope."),
]  # fmt: skip
