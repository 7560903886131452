"""POST /messages: Anthropic-compatible Messages (xAI MessageRequest)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from grok_proxy.schemas import Open


class TextBlock(Open):
    type: Literal["text"]
    text: str


class ImageBlock(Open):
    type: Literal["image"]
    source: dict[str, Any]


class ToolUseBlock(Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None


class ThinkingBlock(Open):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Open):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class AnthropicMessage(Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(Open):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]


class MessagesRequest(Open):
    """An Anthropic-style Messages request; plain or streamed with Anthropic's named events."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "grok-4",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Hello, world"}],
                }
            ]
        }
    )

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None
