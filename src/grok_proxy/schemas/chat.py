"""POST /chat/completions, as documented by xAI (ChatRequest in its OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from grok_proxy.schemas import Open, OtherKind, kind_of

Probability = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class ImageUrl(Open):
    url: str = Field(min_length=1, description="https URL or `data:image/...;base64,` URL.")
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageUrlPart(Open):
    type: Literal["image_url"]
    image_url: ImageUrl


class FileRef(Open):
    file_id: str | None = None
    url: str | None = None


class FilePart(Open):
    type: Literal["file"]
    file: FileRef


class TextFilePart(Open):
    type: Literal["text_file"]


# Known parts are checked; other kinds (input_audio, parts xAI adds later) pass to xAI.
ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImageUrlPart, Tag("image_url")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[TextFilePart, Tag("text_file")]
    | Annotated[OtherKind, Tag("other")],
    Discriminator(kind_of({"text", "image_url", "file", "text_file"})),
]
Content = str | list[ContentPart]


class SystemMessage(Open):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserMessage(Open):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: Content | None = None
    name: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ToolMessage(Open):
    role: Literal["tool"]
    content: Content
    tool_call_id: str | None = None


class FunctionMessage(Open):
    role: Literal["function"]
    content: Content
    name: str | None = None


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(Open):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Open):
    type: str = Field(description='"function", or a server-side tool such as "live_search".')
    function: FunctionDefinition | None = None


class NamedFunction(Open):
    name: str


class NamedToolChoice(Open):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Open):
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextFormat(Open):
    type: Literal["text"]


class JsonObjectFormat(Open):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(Open):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]


class StreamOptions(Open):
    include_usage: bool


class ChatCompletionRequest(Open):
    """A chat completion; the body reaches xAI exactly as sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "grok-4.3",
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "Say hello in one word."},
                    ],
                },
                {
                    "model": "grok-4.3",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "Count to five."}],
                },
            ]
        }
    )

    model: str = Field(min_length=1, description="Model id or alias, e.g. `grok-4.3`.")
    messages: list[Message] = Field(min_length=1)
    temperature: Probability | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=8)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    # Named choices of other kinds (allowed_tools, custom) pass to xAI.
    tool_choice: str | NamedToolChoice | OtherKind | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    search_parameters: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    deferred: bool | None = None
