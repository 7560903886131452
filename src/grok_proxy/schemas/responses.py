"""POST /responses (xAI ModelRequest): only `input` is required; the rest passes as sent."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from grok_proxy.schemas import Open


class ResponsesRequest(Open):
    """Create a model response (xAI's recommended API); streams with `"stream": true`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "grok-4.3", "input": "Tell me a one-line joke."}]}
    )

    input: str | list[dict[str, Any]]
    model: str | None = Field(default=None, min_length=1)
    stream: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
