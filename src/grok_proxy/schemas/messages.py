"""POST /messages: Anthropic-compatible Messages (xAI MessageRequest).

Known content blocks are checked; any other kind (`document`, `search_result`, blocks added
later) and any tool (server tools such as `web_search_20250305` have no `input_schema`) pass
unchanged, so xAI decides.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from grok_proxy.schemas import Open, OtherKind, kind_of


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


class DocumentBlock(Open):
    type: Literal["document"]
    source: dict[str, Any]


KNOWN_BLOCKS = {
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
}

Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[OtherKind, Tag("other")],
    Discriminator(kind_of(KNOWN_BLOCKS)),
]
SystemBlock = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[OtherKind, Tag("other")],
    Discriminator(kind_of({"text"})),
]


class AnthropicMessage(Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(Open):
    """A client tool (with `input_schema`) or a server tool (with a versioned `type`)."""

    name: str = Field(min_length=1)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class MessagesRequest(Open):
    """An Anthropic-style Messages request; plain or streamed with Anthropic's named events."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "grok-4.3",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Hello, world"}],
                }
            ]
        }
    )

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[SystemBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None


class CountTokensRequest(Open):
    """Count a Messages request's input tokens (Anthropic's `messages/count_tokens`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "grok-4.3", "messages": [{"role": "user", "content": "Hi"}]}]
        }
    )

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage]
    system: str | list[SystemBlock] | None = None
    tools: list[AnthropicTool] | None = None
