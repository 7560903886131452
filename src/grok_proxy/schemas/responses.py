"""POST /responses (xAI ModelRequest): forwarded as sent."""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import Streamable


class ResponsesRequest(Streamable):
    """Create a model response (xAI's recommended API); streams with `"stream": true`."""

    published: ClassVar[str] = "ModelRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {"model": "grok-4.3", "input": "Tell me a one-line joke."}
    ]
