"""xAI's published OpenAPI document (xai-openapi.json beside this module), for the docs.

The file is a verbatim copy of https://docs.x.ai/openapi.json, refreshed with
`tools/refresh_xai_spec.py`. The proxy documents each mirrored route's body with xAI's own
schema, so `/docs` shows what xAI accepts, not a narrower model of the proxy's.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

SPEC_FILE = "xai-openapi.json"
REF_PREFIX = "#/components/schemas/"


@functools.cache
def spec() -> dict[str, Any]:
    """The published document, parsed once."""
    text = resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def request_schema(name: str, ref_template: str) -> dict[str, Any]:
    """Component `name` with every component it refers to under `$defs`, refs re-pointed."""
    components: dict[str, Any] = spec()["components"]["schemas"]
    found: dict[str, Any] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found[current] = _repointed(components[current], ref_template, pending)
    top = dict(found.pop(name))
    if found:
        top["$defs"] = found
    return top


def _repointed(schema: Any, ref_template: str, seen: list[str]) -> Any:
    """A copy of `schema` whose `$ref`s follow `ref_template`; each target goes to `seen`."""
    if isinstance(schema, dict):
        copy = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                target = value.removeprefix(REF_PREFIX)
                seen.append(target)
                copy[key] = ref_template.format(model=target)
            else:
                copy[key] = _repointed(value, ref_template, seen)
        return copy
    if isinstance(schema, list):
        return [_repointed(item, ref_template, seen) for item in schema]
    return schema
