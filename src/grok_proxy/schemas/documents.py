"""POST /documents/search (xAI SearchRequest): forwarded as sent."""

from __future__ import annotations

from typing import Any, ClassVar

from grok_proxy.schemas import Mirrored


class DocumentSearchRequest(Mirrored):
    """Search the named document collections for chunks that match a query."""

    published: ClassVar[str] = "SearchRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {"query": "What is the revenue in the last quarter?",
         "source": {"collection_ids": ["collection_80100614-300c-4609-959b-a138fa90f542"]}}
    ]  # fmt: skip
