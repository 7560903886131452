"""POST /vision/analyze: one image and a question, answered by a vision model."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from grok_proxy.schemas import Open


class VisionImage(Open):
    url: str | None = Field(default=None, min_length=1, description="https URL of the image.")
    b64_json: str | None = Field(
        default=None, min_length=1, description="Base64 image bytes (PNG, JPEG, WebP or GIF)."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> VisionImage:
        if (self.url is None) == (self.b64_json is None):
            raise ValueError("give exactly one of `url` or `b64_json`")
        return self


class VisionRequest(Open):
    """Ask a vision model about one image; answered as `{model, created, content, usage}`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "image": {
                        "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
                    },
                    "prompt": "What insect is this?",
                    "detail": "high",
                }
            ]
        }
    )

    image: VisionImage
    model: str | None = Field(default=None, description="Defaults to DEFAULT_VISION_MODEL.")
    prompt: str = Field(default="What's in this image?", min_length=1)
    detail: Literal["auto", "low", "high"] = "high"
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
