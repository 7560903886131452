"""POST /chat/completions and GET /chat/deferred-completion/{id}."""

from __future__ import annotations

from grok_proxy.calls.route import ANY_END, Route
from grok_proxy.routes.shared import forward_as_is, forward_validated
from grok_proxy.routes.table import Row
from grok_proxy.schemas.chat import ChatCompletionRequest

# A GET whose JSON answer is read for its usage: where a deferred completion's cost shows.
BILLED_ANSWER = Route(stream_end=ANY_END)

ROWS = [
    Row("POST", "/chat/completions", forward_validated, schema=ChatCompletionRequest, tag="chat",
        summary="Create a chat completion (xAI /v1/chat/completions)",
        description='Chat completion; with `"stream": true` the SSE stream is relayed as it '
        "arrives."),
    Row("GET", "/chat/deferred-completion/{request_id}", forward_as_is, BILLED_ANSWER, tag="chat",
        summary="Fetch a deferred chat completion (202 with an empty body while pending)",
        description='The result of a `"deferred": true` chat request, once, within 24 hours. '
        "Its usage is read here: this is where a deferred completion's cost becomes known."),
]  # fmt: skip
