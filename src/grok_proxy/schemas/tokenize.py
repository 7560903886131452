"""POST /tokenize and /tokenize-text (xAI TokenizeRequest): forwarded as sent."""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import Mirrored


class TokenizeRequest(Mirrored):
    """Split text into the model's tokens."""

    published: ClassVar[str] = "TokenizeRequest"
    examples: ClassVar[list[dict[str, Any]]] = [{"text": "Hello world!", "model": "grok-4.3"}]
