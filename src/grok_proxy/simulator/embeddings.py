"""Embeddings and tokenization: deterministic vectors and word-ish tokens."""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable
from typing import Any

import orjson

from grok_proxy.simulator.core import JSON, Kit, missing_field, ok
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest


def embeddings(model: str, inputs: list[Any], dimensions: int, encoding: str) -> JSON:
    data = []
    for index, item in enumerate(inputs):
        seed = sum(orjson.dumps(item)) % 97
        vector = [round(((seed + i * 31) % 200) / 100 - 1, 4) for i in range(dimensions)]
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"index": index, "embedding": embedding, "object": "embedding"})
    tokens = sum(len(str(item).split()) for item in inputs)
    return {
        "object": "list",
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def tokens(text: str) -> JSON:
    """Word-ish tokens with their bytes: deterministic stand-ins for xAI's tokenizer."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return {
        "token_ids": [
            {
                "token_id": 1000 + sum(p.encode()) % 50000,
                "string_token": p,
                "token_bytes": list(p.encode()),
            }
            for p in pieces
            if p
        ]
    }


class Embeddings:
    """POST /v1/embeddings and POST /v1/tokenize-text."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    def create(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "input")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and all(isinstance(i, int) for i in inputs):
            inputs = [inputs]
        dimensions = body.get("dimensions") or 8
        answer = embeddings(model, inputs, dimensions, body.get("encoding_format") or "float")
        return self.kit.answer(directives, lambda: ok(answer))

    def tokenize(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request)
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        if not isinstance(body.get("text"), str):
            return missing_field("text")
        return self.kit.answer(directives, lambda: ok(tokens(body["text"])))
