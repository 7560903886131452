"""Document search over collections: deterministic matches that quote the query."""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import parse_qs

from grok_proxy.simulator.core import JSON, Kit, missing_field, ok, parse_directives, xai_error
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest

DEFAULT_LIMIT = 10


def matches(query: str, collection_ids: list[str], limit: int) -> list[JSON]:
    """One chunk per collection (up to `limit`), best first, each mentioning the query."""
    found = []
    for rank, collection_id in enumerate(collection_ids[:limit]):
        found.append(
            {
                "file_id": f"file_{collection_id.removeprefix('collection_')}",
                "chunk_id": f"chunk-{rank}",
                "chunk_content": f"A passage of {collection_id} about: {query}",
                "score": round(1.0 - rank * 0.1, 4),
                "collection_ids": [collection_id],
                "fields": {},
                "page_number": 0,
            }
        )
    return found


class Documents:
    """POST /v1/documents/search."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    def search(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        body = self.kit.json_body(request)
        if isinstance(body, Reply):
            return body
        directives = parse_directives(parse_qs(request.query).get("sim", [""])[0])
        if not isinstance(body.get("query"), str):
            return missing_field("query")
        source = body.get("source")
        if not isinstance(source, dict):
            return missing_field("source")
        collections = source.get("collection_ids")
        if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
            return missing_field("collection_ids")
        limit = body.get("limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        if not isinstance(limit, int) or limit < 0:
            return xai_error(400, "limit must be a positive number.")
        answer = {"matches": matches(body["query"], collections, limit)}
        return self.kit.answer(directives, lambda: ok(answer))
