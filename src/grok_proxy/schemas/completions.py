"""POST /completions (legacy text completion, xAI SampleRequest)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from grok_proxy.schemas import Open
from grok_proxy.schemas.chat import Penalty, Probability, StreamOptions


class CompletionRequest(Open):
    """Legacy text completion; not for reasoning models."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "grok-4.3", "prompt": "1, 2, 3, 4, ", "max_tokens": 3}]
        }
    )

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Probability | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    echo: bool | None = None
    logprobs: bool | int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    user: str | None = None
