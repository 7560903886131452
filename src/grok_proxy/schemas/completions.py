"""POST /completions (legacy text completion, xAI SampleRequest): forwarded as sent."""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import WithStreamOptions


class CompletionRequest(WithStreamOptions):
    """Legacy text completion; not for reasoning models."""

    published: ClassVar[str] = "SampleRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {"model": "grok-4.3", "prompt": "1, 2, 3, 4, ", "max_tokens": 3}
    ]
