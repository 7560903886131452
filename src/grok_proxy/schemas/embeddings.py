"""POST /embeddings (xAI EmbeddingRequest): forwarded as sent.

xAI's schema describes `input` as an object (`{"String": ...}`, `{"StringArray": [...]}`);
xAI's own example and API take a string or a list, as OpenAI's does. The proxy checks
neither form and lets xAI decide (docs/api.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import Mirrored


class EmbeddingRequest(Mirrored):
    """Embed text (or token ids) with an embedding model."""

    published: ClassVar[str] = "EmbeddingRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {"model": "v1", "input": ["The quick brown fox"], "encoding_format": "float"}
    ]
