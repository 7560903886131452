"""xAI's response shapes, built deterministically (see the reference in docs/api.md)."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

REPLY_TEXT = "Hello! This is the grok-proxy simulator standing in for xAI."
FINGERPRINT = "fp_sim0001"
JSON = dict[str, Any]

# The smallest valid JPEG: what b64_json images decode to.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQAB"
    "PxA="
)

MODELS: list[JSON] = [
    {"id": model, "created": 1735689600, "object": "model", "owned_by": "xai"}
    for model in (
        "grok-4-0709",
        "grok-4-fast-reasoning",
        "grok-code-fast-1",
        "grok-3",
        "grok-3-mini",
        "grok-2-image-1212",
        "grok-2-vision-1212",
    )
]


def known_model(name: str) -> bool:
    """Models the simulator serves: any grok-* name or alias, `latest`, the embedding `v1`,
    and the same under OpenRouter's `x-ai/` prefix."""
    name = name.removeprefix("x-ai/")
    return name.startswith("grok") or name in {"latest", "v1"}


def words(count: int) -> list[str]:
    """The pieces of the answer: `count` numbered tokens, or the reply text word by word."""
    if count > 0:
        return [f"tok{i} " for i in range(count)]
    parts = REPLY_TEXT.split(" ")
    return [word + " " for word in parts[:-1]] + [parts[-1]]


def chat_usage(body: JSON, completion_tokens: int) -> JSON:
    prompt_tokens = max(1, len(orjson.dumps(body.get("messages", body.get("prompt", "")))) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "text_tokens": prompt_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "num_sources_used": 0,
    }


def chat_completion(response_id: str, model: str, pieces: list[str], usage: JSON) -> JSON:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }


def data_event(payload: JSON) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: JSON) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def chat_events(response_id: str, model: str, pieces: list[str], usage: JSON | None) -> list[bytes]:
    """xAI's framing: role chunk, content chunks, finish chunk, usage chunk, [DONE]."""
    head = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(choices: list[JSON], **extra: Any) -> bytes:
        return data_event({**head, "choices": choices, **extra, "system_fingerprint": FINGERPRINT})

    events = [chunk([{"index": 0, "delta": {"role": "assistant"}}])]
    events += [chunk([{"index": 0, "delta": {"content": piece}}]) for piece in pieces]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if usage is not None:
        events.append(chunk([], usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def text_completion(response_id: str, model: str, pieces: list[str], usage: JSON) -> JSON:
    return {
        "id": response_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": "".join(pieces), "finish_reason": "stop"}],
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }


def text_completion_events(response_id: str, model: str, pieces: list[str]) -> list[bytes]:
    head = {
        "id": response_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    events = [data_event({**head, "choices": [{"index": 0, "text": p}]}) for p in pieces]
    events.append(
        data_event({**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    )
    events.append(b"data: [DONE]\n\n")
    return events


def images(prompt: str, count: int, response_format: str, sequence: int) -> JSON:
    revised = f"A detailed rendering of: {prompt}"
    if response_format == "b64_json":
        encoded = base64.b64encode(TINY_JPEG).decode()
        data = [{"b64_json": encoded, "revised_prompt": revised} for _ in range(count)]
    else:
        data = [
            {"url": f"https://imgen.x.ai/sim/{sequence}-{i}.jpg", "revised_prompt": revised}
            for i in range(count)
        ]
    return {"data": data}


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


def anthropic_message(message_id: str, model: str, pieces: list[str], input_tokens: int) -> JSON:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "".join(pieces)}],
        "model": model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": len(pieces),
        },
    }


def anthropic_events(
    message_id: str, model: str, pieces: list[str], input_tokens: int
) -> list[bytes]:
    """Anthropic's named events: message_start, one text block, message_delta, message_stop."""
    start = anthropic_message(message_id, model, [], input_tokens)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"]["output_tokens"] = 0
    events = [
        named_event("message_start", {"type": "message_start", "message": start}),
        named_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        named_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    events += [
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        ),
        named_event("message_stop", {"type": "message_stop"}),
    ]
    return events


def model_response(
    response_id: str, model: str, pieces: list[str], status: str = "completed"
) -> JSON:
    text = "".join(pieces)
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": status,
        "output": [
            {
                "id": f"msg_{response_id}",
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": 8,
            "output_tokens": len(pieces),
            "total_tokens": 8 + len(pieces),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def response_events(response_id: str, model: str, pieces: list[str]) -> list[bytes]:
    """The OpenAI Responses event stream, as third-party xAI clients expect it."""
    created = model_response(response_id, model, [], status="in_progress")
    created["output"] = []
    events = [named_event("response.created", {"type": "response.created", "response": created})]
    events += [
        named_event(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "content_index": 0,
                "delta": p,
            },
        )
        for p in pieces
    ]
    done = model_response(response_id, model, pieces)
    events.append(
        named_event("response.completed", {"type": "response.completed", "response": done})
    )
    return events


def api_key_info(key: str) -> JSON:
    return {
        "redacted_api_key": f"{key[:4]}...{key[-4:]}",
        "user_id": "sim-user",
        "name": "simulator key",
        "create_time": "2026-01-01T00:00:00Z",
        "modify_time": "2026-01-01T00:00:00Z",
        "modified_by": "sim-user",
        "team_id": "sim-team",
        "acls": ["api-key:model:*", "api-key:endpoint:*"],
        "api_key_id": "sim-key-1",
        "team_blocked": False,
        "api_key_blocked": False,
        "api_key_disabled": False,
    }


def language_models() -> JSON:
    return {
        "models": [
            {
                "id": "grok-3",
                "fingerprint": FINGERPRINT,
                "created": 1735689600,
                "object": "model",
                "owned_by": "xai",
                "version": "1.0",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "prompt_text_token_price": 30000,
                "cached_prompt_text_token_price": 7500,
                "prompt_image_token_price": 0,
                "completion_text_token_price": 150000,
                "search_price": 0,
                "aliases": ["grok-3-latest", "grok-3-beta"],
            }
        ]
    }
