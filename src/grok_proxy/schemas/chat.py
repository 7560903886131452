"""POST /chat/completions (xAI ChatRequest): forwarded as sent, see `Mirrored`."""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import WithStreamOptions


class ChatCompletionRequest(WithStreamOptions):
    """A chat completion; the body reaches xAI exactly as sent."""

    published: ClassVar[str] = "ChatRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {
            "model": "grok-4.3",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say hello in one word."},
            ],
        },
        {
            "model": "grok-4.3",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Count to five."}],
        },
    ]
