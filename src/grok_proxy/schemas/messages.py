"""POST /messages and /messages/count_tokens (xAI MessageRequest): forwarded as sent.

Content blocks, tools (client tools, server tools such as `web_search_20250305`,
`mcp_toolset`-style kinds) and fields xAI adds later all reach xAI unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import Mirrored, Streamable


class MessagesRequest(Streamable):
    """An Anthropic-style Messages request; plain or streamed with Anthropic's named events."""

    published: ClassVar[str] = "MessageRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {
            "model": "grok-4.3",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Hello, world"}],
        }
    ]


class CountTokensRequest(Mirrored):
    """Count a Messages request's input tokens (Anthropic's `messages/count_tokens`).

    xAI publishes no schema for it; it takes a Messages body (`max_tokens` not needed).
    """

    published: ClassVar[str] = "MessageRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {"model": "grok-4.3", "messages": [{"role": "user", "content": "Hi"}]}
    ]
