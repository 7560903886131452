"""POST /images/generations (xAI GenerateImageRequest) and the seed's /images/generate."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from grok_proxy.schemas import Mirrored, Open

# OpenAI's image fields that xAI does not support: /images/generate leaves them out.
UNSUPPORTED_IMAGE_FIELDS = ("quality", "size", "style")

EXAMPLES: list[dict[str, Any]] = [
    {"prompt": "A cat in a tree", "model": "grok-imagine-image", "n": 1, "response_format": "url"},
    {
        "prompt": "A lighthouse at dusk",
        "model": "grok-imagine-image",
        "response_format": "b64_json",
    },
]


class ImageGenerationsRequest(Mirrored):
    """xAI's image generation: forwarded as sent (no default model, no field dropped)."""

    published: ClassVar[str] = "GenerateImageRequest"
    examples: ClassVar[list[dict[str, Any]]] = EXAMPLES


class ImageEditRequest(Mirrored):
    """xAI's image edit: forwarded as sent (only documented here, never parsed)."""

    published: ClassVar[str] = "EditImageRequest"
    examples: ClassVar[list[dict[str, Any]]] = [
        {
            "prompt": "Make the sky purple",
            "model": "grok-imagine-image",
            "image": {"url": "https://example.com/photo.jpg"},
        }
    ]


class ImageGenerationRequest(Open):
    """The seed's /images/generate: defaults filled, OpenAI's unsupported fields dropped."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "A cat in a tree", "n": 1}, EXAMPLES[1]]}
    )

    prompt: str = Field(min_length=1, description="What to draw.")
    model: str | None = Field(default=None, description="Defaults to DEFAULT_IMAGE_MODEL.")
    n: int | None = Field(default=None, ge=1, le=10)
    response_format: Literal["url", "b64_json"] | None = None
    user: str | None = None
    aspect_ratio: str | None = Field(default=None, description="grok-imagine models only.")
    resolution: str | None = Field(default=None, description="grok-imagine models only.")
    quality: Any = Field(default=None, description="Not supported by xAI: dropped.")
    size: Any = Field(default=None, description="Not supported by xAI: dropped.")
    style: Any = Field(default=None, description="Not supported by xAI: dropped.")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must not be blank")
        return prompt
