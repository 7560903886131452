"""Upstream presets: xAI (any region) or a third-party access point serving Grok.

A preset says where requests go, which of xAI's routes the access point has, and how model
names differ there. Callers keep using xAI's names (`grok-4`); the upstream receives its own
(`x-ai/grok-4` on OpenRouter), and answers come back in the caller's form again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

# xAI's inference routes (paths below the base URL) that a third party may or may not have.
CHAT = "/chat/completions"


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str
    # Routes the access point serves; None means every xAI route (xAI itself, or a gateway
    # that passes requests to xAI unchanged).
    routes: frozenset[str] | None = None
    # Prefix the access point puts before xAI's model names.
    model_prefix: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)

    def serves(self, path: str) -> bool:
        if self.routes is None:
            return True
        bare = path.split("?", 1)[0]
        return any(bare == route or bare.startswith(route + "/") for route in self.routes)


PRESETS = {
    "xai": Preset("xai", "https://api.x.ai/v1"),
    "openrouter": Preset(
        "openrouter",
        "https://openrouter.ai/api/v1",
        routes=frozenset({CHAT, "/completions", "/models", "/responses"}),
        model_prefix="x-ai/",
    ),
    "cometapi": Preset(
        "cometapi",
        "https://api.cometapi.com/v1",
        routes=frozenset(
            {CHAT, "/completions", "/models", "/images/generations", "/embeddings", "/messages"}
        ),
    ),
    # Cloudflare's AI Gateway passes requests on to xAI as they are: every route works.
    "cloudflare": Preset(
        "cloudflare", "https://gateway.ai.cloudflare.com/v1/{account_id}/{gateway_id}/grok/v1"
    ),
}


class ModelNames:
    """Translates model names between the caller's form and the upstream's, both ways."""

    def __init__(self, prefix: str, aliases: dict[str, str]) -> None:
        self.prefix = prefix
        self.aliases = aliases
        self.reverse = {upstream: caller for caller, upstream in aliases.items()}
        self.identity = not prefix and not aliases
        # In answers, `"model": "<upstream name>"` (and model ids in lists) go back to the
        # caller's form by a byte-level rewrite: streams need no JSON parsing for it.
        names = sorted(self.reverse, key=len, reverse=True)
        alternatives = [re.escape(name.encode()) for name in names]
        if prefix:
            alternatives.append(re.escape(prefix.encode()) + rb"[^\"]+")
        self.pattern = (
            re.compile(rb'("(?:model|id)"\s*:\s*")(' + b"|".join(alternatives) + rb')"')
            if alternatives
            else None
        )

    def to_upstream(self, name: str) -> str:
        if name in self.aliases:
            return self.aliases[name]
        if self.prefix and not name.startswith(self.prefix):
            return self.prefix + name
        return name

    def to_caller(self, name: str) -> str:
        if name in self.reverse:
            return self.reverse[name]
        return name.removeprefix(self.prefix) if self.prefix else name

    def request_body(self, body: bytes) -> bytes:
        """The body with its `model` in the upstream's form (unchanged when nothing maps)."""
        if self.identity or b'"model"' not in body:
            return body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            return body
        mapped = self.to_upstream(payload["model"])
        if mapped == payload["model"]:
            return body
        payload["model"] = mapped
        return orjson.dumps(payload)

    def answer(self, data: bytes) -> bytes:
        """Model names in an answer (a body or stream events) back in the caller's form."""
        if self.pattern is None:
            return data
        return self.pattern.sub(
            lambda m: m.group(1) + self.to_caller(m.group(2).decode()).encode() + b'"', data
        )
