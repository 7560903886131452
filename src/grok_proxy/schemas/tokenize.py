"""POST /tokenize and /tokenize-text (xAI TokenizeRequest)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from grok_proxy.schemas import Open


class TokenizeRequest(Open):
    """Split text into the model's tokens."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Hello world!", "model": "grok-4.3"}]}
    )

    text: str
    model: str = Field(min_length=1)
    user: str | None = None
