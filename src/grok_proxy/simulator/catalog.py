"""The models the simulator serves: today's xAI catalogue (late 2026), their aliases and kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPLY_TEXT = "Hello! This is the grok-proxy simulator standing in for xAI."
FINGERPRINT = "fp_sim0001"
CREATED = 1767225600  # 2026-01-01
DEFAULT_CHAT_MODEL = "grok-4.3"
DEFAULT_IMAGE_MODEL = "grok-imagine-image"
DEFAULT_VIDEO_MODEL = "grok-imagine-video"


@dataclass(frozen=True, slots=True)
class Model:
    """One model of the catalogue."""

    id: str
    kind: str  # "language", "image", "video", "voice" or "embedding"
    aliases: tuple[str, ...] = ()
    reasoning: bool = False
    input_modalities: tuple[str, ...] = ("text", "image")
    prices: dict[str, int] = field(default_factory=dict)


# Prices in xAI's units: USD cents per 100 million tokens, which is exactly ticks per token
# (1 USD = 10,000,000,000 ticks). So a twin answer's `cost_in_usd_ticks` is tokens x price.
LANGUAGE_PRICES = {
    "prompt_text_token_price": 20000,
    "cached_prompt_text_token_price": 5000,
    "prompt_image_token_price": 20000,
    "completion_text_token_price": 60000,
    "search_price": 0,
}
EMBEDDING_PRICES = {"prompt_text_token_price": 1000, "prompt_image_token_price": 1000}
TICKS_PER_USD = 10_000_000_000
# Per-use prices of what xAI bills outside tokens ($5 per 1,000 tool calls; $0.02 an image,
# $0.05 a second of video, as xAI's 2026 price list).
SERVER_SIDE_TOOL_TICKS = 50_000_000
IMAGE_TICKS = 200_000_000
VIDEO_SECOND_TICKS = 500_000_000
# `image_price` in the image model list, in the document's unit (USD cents per image).
IMAGE_PRICE_CENTS = IMAGE_TICKS * 100 // TICKS_PER_USD

MODELS: tuple[Model, ...] = (
    Model("grok-4.7", "language", ("grok-4.7-latest", "grok-latest"), reasoning=True),
    Model("grok-4.6", "language", ("grok-4.6-latest",), reasoning=True),
    Model("grok-4.5", "language", ("grok-4.5-latest",), reasoning=True),
    Model("grok-4.3", "language", ("grok-4.3-latest",), reasoning=True),
    Model(
        "grok-4.20-0309-reasoning",
        "language",
        ("grok-4.20", "grok-4.20-reasoning", "grok-4.20-latest"),
        reasoning=True,
    ),
    Model("grok-4.20-0309-non-reasoning", "language", ("grok-4.20-non-reasoning",)),
    Model("grok-4.20-multi-agent-0309", "language", ("grok-4.20-multi-agent",), reasoning=True),
    Model(
        "grok-build-0.1", "language", ("grok-build",), reasoning=True, input_modalities=("text",)
    ),
    Model(
        "grok-3-mini",
        "language",
        ("grok-3-mini-latest", "grok-3-mini-beta"),
        reasoning=True,
        input_modalities=("text",),
    ),
    # Retired by xAI on 2026-05-15 but still answered here under its short names, so suites
    # written against the simulator before then keep working (xAI itself would answer 404).
    Model("grok-4", "language", ("grok-4-latest",)),
    Model("grok-imagine-image", "image", ("grok-imagine-image-latest",)),
    Model("grok-imagine-image-quality", "image"),
    Model("grok-imagine-image-2.0", "image"),
    Model("grok-imagine-video", "video", ("grok-imagine-video-latest",)),
    Model("grok-imagine-video-1.5", "video"),
    Model("grok-voice-think-fast-1.0", "voice", ("grok-voice-latest",)),
    Model("grok-voice-fast-1.0", "voice"),
    Model("v1", "embedding", ("latest",), input_modalities=("text",)),
)

# Requests that name these models are still forwarded by the proxy as sent; the simulator
# answers them as xAI does since their retirement: 404.
RETIRED = frozenset(
    {
        "grok-4-0709",
        "grok-4-1-fast-reasoning",
        "grok-4-1-fast-non-reasoning",
        "grok-4-1-fast",
        "grok-4-fast-reasoning",
        "grok-4-fast-non-reasoning",
        "grok-4-fast",
        "grok-code-fast-1",
        "grok-3",
        "grok-3-latest",
        "grok-imagine-image-pro",
        "grok-2-image",
        "grok-2-image-1212",
        "grok-2-vision-latest",
        "grok-2-vision-1212",
    }
)

_BY_NAME: dict[str, Model] = {}
for _model in MODELS:
    for _name in (_model.id, *_model.aliases):
        _BY_NAME[_name] = _model


def find(name: str) -> Model | None:
    """The model a name or alias stands for (OpenRouter's `x-ai/` prefix allowed)."""
    return _BY_NAME.get(name.removeprefix("x-ai/"))


def known_model(name: str) -> bool:
    """Whether xAI would serve this name."""
    return find(name) is not None


def reasons(name: str) -> bool:
    """Whether the model thinks before answering (and reports reasoning tokens)."""
    model = find(name)
    return model is not None and model.reasoning


def token_cost(
    prompt: int, completion: int, reasoning: int = 0, cached: int = 0, server_side_tools: int = 0
) -> int:
    """What xAI would bill in ticks: reasoning at the completion price, cached prompt cheaper."""
    prices = LANGUAGE_PRICES
    return (
        (prompt - cached) * prices["prompt_text_token_price"]
        + cached * prices["cached_prompt_text_token_price"]
        + (completion + reasoning) * prices["completion_text_token_price"]
        + server_side_tools * SERVER_SIDE_TOOL_TICKS
    )


def listing(kind: str | None = None) -> list[dict[str, Any]]:
    """OpenAI-style model objects (`/v1/models`)."""
    return [
        {"id": m.id, "created": CREATED, "object": "model", "owned_by": "xai"}
        for m in MODELS
        if kind is None or m.kind == kind
    ]


def language_model(model: Model) -> dict[str, Any]:
    """xAI's `/v1/language-models` entry: modalities, prices and aliases."""
    return _model_entry(model, "text", LANGUAGE_PRICES)


def embedding_model(model: Model) -> dict[str, Any]:
    """xAI's `/v1/embedding-models` entry."""
    return _model_entry(model, "embedding", EMBEDDING_PRICES)


def _model_entry(model: Model, output: str, prices: dict[str, Any]) -> dict[str, Any]:
    """The fields language and embedding model entries share; they differ in output and price."""
    return {
        "id": model.id,
        "fingerprint": FINGERPRINT,
        "created": CREATED,
        "object": "model",
        "owned_by": "xai",
        "version": "1.0",
        "input_modalities": list(model.input_modalities),
        "output_modalities": [output],
        **prices,
        "aliases": list(model.aliases),
    }


def media_model(model: Model) -> dict[str, Any]:
    """xAI's `/v1/image-generation-models` and `/v1/video-generation-models` entry."""
    entry: dict[str, Any] = {
        "id": model.id,
        "fingerprint": FINGERPRINT,
        "created": CREATED,
        "object": "model",
        "owned_by": "xai",
        "version": "1.0",
        "input_modalities": ["text", "image"],
        "output_modalities": [model.kind],
        "max_prompt_length": 1024,
        "aliases": list(model.aliases),
    }
    if model.kind == "image":
        entry["image_price"] = IMAGE_PRICE_CENTS
    else:
        entry["input_modalities"] = ["text", "image", "video"]
    return entry
