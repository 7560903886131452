"""POST /embeddings (xAI EmbeddingRequest)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from grok_proxy.schemas import Open

NonEmpty = Field(min_length=1)


class EmbeddingRequest(Open):
    """Embed text (or token ids) with an embedding model."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "v1", "input": ["The quick brown fox"], "encoding_format": "float"}
            ]
        }
    )

    model: str = Field(min_length=1)
    input: (
        Annotated[str, NonEmpty]
        | Annotated[list[str], NonEmpty]
        | Annotated[list[int], NonEmpty]
        | Annotated[list[list[int]], NonEmpty]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
