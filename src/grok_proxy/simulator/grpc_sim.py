"""The simulator's gRPC side: the services `xai-sdk` uses most, from the SDK's own protos.

Message classes come from `xai_sdk.proto.v6` (xai-sdk is a dependency): they are exactly
what the SDK sends and expects, with no code generation step to keep in sync.

The simulated model behaves as on HTTP (simulator/chat.py decides the turn): it calls an
offered function tool with schema-valid arguments, answers a `response_format` JSON schema
with an instance of it, thinks first on reasoning models (`reasoning_content`), answers in
text after a tool result, and bills server-side tools and tokens in `cost_in_usd_ticks`.
Base64 images are data URLs (`data:image/jpeg;base64,...`), as xAI sends them.

Faults ride in the model name as on HTTP (`grok-4@status=429`, `delay`, `chunks`, `pace`,
`cut`, `stall`); an HTTP status becomes the gRPC code xAI uses for it. Calls land in the
same request log and counters as HTTP ones (`/_sim/requests`, `/_sim/stats`), with the
method as `path`, the metadata as `headers` and the request message as JSON `body`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from xai_sdk.proto.v6 import (
    chat_pb2,
    deferred_pb2,
    embed_pb2,
    image_pb2,
    models_pb2,
    sample_pb2,
    tokenize_pb2,
    usage_pb2,
)

from grok_proxy.simulator import catalog, tools
from grok_proxy.simulator.chat import Turn, plan, structured_text
from grok_proxy.simulator.core import ERROR_TEXTS, number, split_model
from grok_proxy.simulator.embeddings import embeddings, tokens
from grok_proxy.simulator.media import TINY_JPEG, images
from grok_proxy.simulator.wire import SimRequest
from grok_proxy.simulator.xai import Simulator

# The gRPC code behind each HTTP status xAI answers (its REST errors name these codes).
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
NO_KEY = "No API key provided. Set the `authorization` metadata to `Bearer <your key>`."

# What each server-side tool of a request is counted as in `SamplingUsage`.
SERVER_SIDE_TOOLS = {
    "web_search": usage_pb2.SERVER_SIDE_TOOL_WEB_SEARCH,
    "x_search": usage_pb2.SERVER_SIDE_TOOL_X_SEARCH,
    "code_execution": usage_pb2.SERVER_SIDE_TOOL_CODE_EXECUTION,
    "collections_search": usage_pb2.SERVER_SIDE_TOOL_COLLECTIONS_SEARCH,
    "mcp": usage_pb2.SERVER_SIDE_TOOL_MCP,
    "attachment_search": usage_pb2.SERVER_SIDE_TOOL_ATTACHMENT_SEARCH,
    "image_generation": usage_pb2.SERVER_SIDE_TOOL_IMAGE_GENERATION,
}
# xAI's gRPC API sends base64 images as data URLs; xai-sdk's `.image` cuts at "base64,".
DATA_URL = "data:image/jpeg;base64," + base64.b64encode(TINY_JPEG).decode()
FORMATS = {
    chat_pb2.FORMAT_TYPE_JSON_OBJECT: "json_object",
    chat_pb2.FORMAT_TYPE_JSON_SCHEMA: "json_schema",
}

Context = grpc.aio.ServicerContext[Any, Any]


class Refused(Exception):
    """Ends a call with a gRPC status, as xAI would."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(int(time.time()))
    return stamp


class GrpcSimulator:
    """xAI's gRPC services over the HTTP simulator's state and faults."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator
        # request_id -> (the answer, whether it stays pending)
        self.deferred: dict[str, tuple[chat_pb2.GetChatCompletionResponse, bool]] = {}
        simulator.stateful.append(self)

    def clear(self) -> None:
        self.deferred.clear()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """One generic handler per service; methods not listed answer UNIMPLEMENTED."""
        unary = {
            ("xai_api.Chat", "GetCompletion"): (
                self.completion,
                chat_pb2.GetCompletionsRequest,
                chat_pb2.GetChatCompletionResponse,
            ),
            ("xai_api.Models", "ListLanguageModels"): (
                self.language_models,
                empty_pb2.Empty,
                models_pb2.ListLanguageModelsResponse,
            ),
            ("xai_api.Models", "GetLanguageModel"): (
                self.language_model,
                models_pb2.GetModelRequest,
                models_pb2.LanguageModel,
            ),
            ("xai_api.Models", "ListImageGenerationModels"): (
                self.image_models,
                empty_pb2.Empty,
                models_pb2.ListImageGenerationModelsResponse,
            ),
            ("xai_api.Models", "GetImageGenerationModel"): (
                self.image_model,
                models_pb2.GetModelRequest,
                models_pb2.ImageGenerationModel,
            ),
            ("xai_api.Models", "ListEmbeddingModels"): (
                self.embedding_models,
                empty_pb2.Empty,
                models_pb2.ListEmbeddingModelsResponse,
            ),
            ("xai_api.Models", "GetEmbeddingModel"): (
                self.embedding_model,
                models_pb2.GetModelRequest,
                models_pb2.EmbeddingModel,
            ),
            ("xai_api.Chat", "StartDeferredCompletion"): (
                self.start_deferred,
                chat_pb2.GetCompletionsRequest,
                deferred_pb2.StartDeferredResponse,
            ),
            ("xai_api.Chat", "GetDeferredCompletion"): (
                self.get_deferred,
                deferred_pb2.GetDeferredRequest,
                chat_pb2.GetDeferredCompletionResponse,
            ),
            ("xai_api.Tokenize", "TokenizeText"): (
                self.tokenize,
                tokenize_pb2.TokenizeTextRequest,
                tokenize_pb2.TokenizeTextResponse,
            ),
            ("xai_api.Image", "GenerateImage"): (
                self.image,
                image_pb2.GenerateImageRequest,
                image_pb2.ImageResponse,
            ),
            ("xai_api.Embedder", "Embed"): (
                self.embed,
                embed_pb2.EmbedRequest,
                embed_pb2.EmbedResponse,
            ),
        }
        services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {
            "xai_api.Chat": {
                "GetCompletionChunk": grpc.unary_stream_rpc_method_handler(
                    self.chunks,
                    chat_pb2.GetCompletionsRequest.FromString,
                    chat_pb2.GetChatCompletionChunk.SerializeToString,
                )
            }
        }
        for (service, name), (answer, request, response) in unary.items():
            services.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(
                self.unary(f"/{service}/{name}", answer),
                request.FromString,
                response.SerializeToString,
            )
        return [
            grpc.method_handlers_generic_handler(service, methods)
            for service, methods in services.items()
        ]

    # plumbing shared by every method
    def admit(self, method: str, request: Message, context: Context) -> None:
        """Log the call where tests look, and check its key as xAI does."""
        metadata = {
            name: value if isinstance(value, str) else value.hex()
            for name, value in context.invocation_metadata() or ()
        }
        body = json_format.MessageToJson(request, indent=None).encode()
        self.sim.requests.append(SimRequest("POST", method, "", metadata, body))
        self.sim.count("requests")
        self.sim.count("grpc_requests")
        key = metadata.get("authorization", "").removeprefix("Bearer ").strip()
        if not key:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, NO_KEY)
        if "invalid" in key:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"Incorrect API key provided: {key[:2]}***{key[-2:]}. You can obtain an API key "
                "from https://console.x.ai.",
            )

    @staticmethod
    def model(name: str) -> tuple[str, dict[str, str]]:
        model, directives = split_model(name or "grok-4")
        if not catalog.known_model(model):
            raise Refused(
                grpc.StatusCode.NOT_FOUND,
                f"The model {model} does not exist or your team does not have access to it.",
            )
        return model, directives

    @staticmethod
    async def faults(directives: dict[str, str]) -> None:
        """The delay, then the error status, the directives ask for."""
        delay = number(directives, "delay")
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        status = number(directives, "status")
        if status:
            raise Refused(
                CODES.get(status, grpc.StatusCode.UNKNOWN),
                ERROR_TEXTS.get(status, f"The simulator answered {status}."),
            )

    def unary(
        self, name: str, answer: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        """A unary method: admit, answer, and turn `Refused` into its status."""

        async def method(request: Any, context: Context) -> Any:
            try:
                self.admit(name, request, context)
                return await answer(request)
            except Refused as refused:
                await context.abort(refused.code, refused.details)
            except asyncio.CancelledError:
                self.sim.count("requests_cancelled")
                raise

        return method

    # Chat
    def turn(self, request: chat_pb2.GetCompletionsRequest) -> tuple[str, dict[str, str], Turn]:
        """The model, its directives and what the simulated model does for this request."""
        model, directives = self.model(request.model)
        offered = [
            tools.Offered(tool.function.name, _schema(tool.function.parameters))
            for tool in request.tools
            if tool.WhichOneof("tool") == "function"
        ]
        mode = request.tool_choice.mode if request.HasField("tool_choice") else None
        choice = "none" if mode == chat_pb2.TOOL_MODE_NONE else "auto"
        forced = request.tool_choice.function_name or None
        response_format = None
        if request.response_format.format_type in FORMATS:
            schema = _schema(request.response_format.schema)
            kind = FORMATS[request.response_format.format_type]
            response_format = {"type": kind, "json_schema": {"schema": schema}}
        turn = plan(
            model,
            directives,
            call=tools.choose(offered, choice, forced),
            tool_result=_tool_result(request),
            structured=structured_text(response_format),
            effort="none" if request.reasoning_effort == chat_pb2.EFFORT_NONE else None,
        )
        turn.server_tools = [
            kind for tool in request.tools if (kind := tool.WhichOneof("tool")) in SERVER_SIDE_TOOLS
        ]
        return model, directives, turn

    def answer(
        self,
        request: chat_pb2.GetCompletionsRequest,
        model: str,
        directives: dict[str, str],
        turn: Turn,
    ) -> chat_pb2.GetChatCompletionResponse:
        """The whole completion for a turn."""
        message = chat_pb2.CompletionMessage(
            content=turn.text,
            reasoning_content="".join(turn.reasoning),
            role=chat_pb2.MessageRole.ROLE_ASSISTANT,
        )
        response_id = self.sim.next_id()
        if turn.call is not None:
            message.tool_calls.append(_tool_call(response_id, turn.call))
        return chat_pb2.GetChatCompletionResponse(
            id=response_id,
            model=model,
            created=now(),
            system_fingerprint=catalog.FINGERPRINT,
            outputs=[
                chat_pb2.CompletionOutput(index=0, finish_reason=_finish(turn), message=message)
            ],
            usage=_usage(request, turn, directives),
        )

    async def completion(self, request: chat_pb2.GetCompletionsRequest) -> Any:
        model, directives, turn = self.turn(request)
        await self.faults(directives)
        return self.answer(request, model, directives, turn)

    async def start_deferred(self, request: chat_pb2.GetCompletionsRequest) -> Any:
        """StartDeferredCompletion: the answer is kept until fetched (`pending` keeps it back)."""
        model, directives, turn = self.turn(request)
        await self.faults(directives)
        request_id = self.sim.next_id()
        answer = self.answer(request, model, directives, turn)
        self.deferred[request_id] = (answer, "pending" in directives)
        return deferred_pb2.StartDeferredResponse(request_id=request_id)

    async def get_deferred(self, request: deferred_pb2.GetDeferredRequest) -> Any:
        found = self.deferred.get(request.request_id)
        if found is None:
            raise Refused(
                grpc.StatusCode.NOT_FOUND,
                f"No deferred request {request.request_id}, or it was already fetched.",
            )
        answer, pending = found
        if pending:
            return chat_pb2.GetDeferredCompletionResponse(status=deferred_pb2.PENDING)
        del self.deferred[request.request_id]
        return chat_pb2.GetDeferredCompletionResponse(status=deferred_pb2.DONE, response=answer)

    async def chunks(
        self, request: chat_pb2.GetCompletionsRequest, context: Context
    ) -> AsyncIterator[chat_pb2.GetChatCompletionChunk]:
        """GetCompletionChunk: reasoning, then content pieces or one whole tool call, then the
        finish with usage; pace, cut and stall count the content pieces, as on HTTP."""
        try:
            self.admit("/xai_api.Chat/GetCompletionChunk", request, context)
            model, directives, turn = self.turn(request)
            await self.faults(directives)
        except Refused as refused:
            await context.abort(refused.code, refused.details)
        self.sim.count("streams_started")
        response_id = self.sim.next_id()
        deltas = [chat_pb2.Delta(reasoning_content=piece) for piece in turn.reasoning]
        head = len(deltas)
        deltas += [chat_pb2.Delta(content=piece) for piece in turn.pieces]
        if turn.call is not None:
            deltas.append(chat_pb2.Delta(tool_calls=[_tool_call(response_id, turn.call)]))
        pace = number(directives, "pace") / 1000
        cut = number(directives, "cut", -1)
        stall = number(directives, "stall", -1)
        try:
            for index, delta in enumerate(deltas):
                piece = index - head  # negative while the model thinks
                if piece >= 0 and pace:
                    await asyncio.sleep(pace)
                if piece >= 0 and piece == cut:
                    self.sim.count("streams_cut")
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE, "The simulator cut the stream."
                    )
                if piece >= 0 and piece == stall:
                    await asyncio.Event().wait()
                last = index == len(deltas) - 1
                # The SDK takes each chunk's role as the output's: every delta carries it.
                delta.role = chat_pb2.MessageRole.ROLE_ASSISTANT
                yield chat_pb2.GetChatCompletionChunk(
                    id=response_id,
                    model=model,
                    created=now(),
                    system_fingerprint=catalog.FINGERPRINT,
                    outputs=[
                        chat_pb2.CompletionOutputChunk(
                            index=0,
                            delta=delta,
                            finish_reason=_finish(turn) if last else sample_pb2.REASON_INVALID,
                        )
                    ],
                    usage=_usage(request, turn, directives) if last else None,
                )
        except asyncio.CancelledError:
            self.sim.count("streams_cancelled")
            raise
        self.sim.count("streams_completed")

    # Models
    async def language_models(self, request: empty_pb2.Empty) -> Any:
        return models_pb2.ListLanguageModelsResponse(
            models=[_language_model(entry["id"]) for entry in catalog.listing()]
        )

    async def language_model(self, request: models_pb2.GetModelRequest) -> Any:
        for entry in catalog.listing():
            if entry["id"] == request.name:
                return _language_model(entry["id"])
        raise Refused(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.name}")

    async def image_models(self, request: empty_pb2.Empty) -> Any:
        models = [_image_model(m) for m in catalog.MODELS if m.kind == "image"]
        return models_pb2.ListImageGenerationModelsResponse(models=models)

    async def image_model(self, request: models_pb2.GetModelRequest) -> Any:
        return _image_model(_one("image", request.name))

    async def embedding_models(self, request: empty_pb2.Empty) -> Any:
        models = [_embedding_model(m) for m in catalog.MODELS if m.kind == "embedding"]
        return models_pb2.ListEmbeddingModelsResponse(models=models)

    async def embedding_model(self, request: models_pb2.GetModelRequest) -> Any:
        return _embedding_model(_one("embedding", request.name))

    # Tokenize
    async def tokenize(self, request: tokenize_pb2.TokenizeTextRequest) -> Any:
        model, directives = self.model(request.model)
        await self.faults(directives)
        found = tokens(request.text)["token_ids"]
        return tokenize_pb2.TokenizeTextResponse(
            model=model,
            tokens=[
                tokenize_pb2.Token(
                    token_id=token["token_id"],
                    string_token=token["string_token"],
                    token_bytes=bytes(token["token_bytes"]),
                )
                for token in found
            ],
        )

    # Image
    async def image(self, request: image_pb2.GenerateImageRequest) -> Any:
        model, directives = self.model(request.model or "grok-imagine-image")
        await self.faults(directives)
        if not request.prompt:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "prompt must not be empty.")
        answer = images(
            request.prompt,
            request.n or 1,
            "b64_json" if request.format == image_pb2.ImageFormat.IMG_FORMAT_BASE64 else "url",
            self.sim.sequence,
        )
        cost = number(directives, "cost", answer["usage"]["cost_in_usd_ticks"])
        return image_pb2.ImageResponse(
            model=model,
            images=[
                # url and base64 are one field (a oneof): set only the one there is.
                image_pb2.GeneratedImage(url=item["url"], respect_moderation=True)
                if "url" in item
                else image_pb2.GeneratedImage(base64=DATA_URL, respect_moderation=True)
                for item in answer["data"]
            ],
            usage=usage_pb2.SamplingUsage(cost_in_usd_ticks=cost),
        )

    # Embedder
    async def embed(self, request: embed_pb2.EmbedRequest) -> Any:
        model, directives = self.model(request.model or "v1")
        await self.faults(directives)
        texts = [item.string for item in request.input]
        answer = embeddings(model, texts, 8, "float")
        return embed_pb2.EmbedResponse(
            id=self.sim.next_id(),
            model=model,
            embeddings=[
                embed_pb2.Embedding(
                    index=item["index"],
                    embeddings=[embed_pb2.FeatureVector(float_array=item["embedding"])],
                )
                for item in answer["data"]
            ],
            usage=usage_pb2.EmbeddingUsage(num_text_embeddings=len(texts)),
        )


def _one(kind: str, name: str) -> catalog.Model:
    """The model of this kind a name or alias stands for, or xAI's NOT_FOUND."""
    model = catalog.find(name)
    if model is None or model.kind != kind:
        raise Refused(grpc.StatusCode.NOT_FOUND, f"Model not found: {name}")
    return model


def _schema(text: str) -> Any:
    """A JSON schema sent as a string (tool parameters, response format); {} when unreadable."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _tool_result(request: chat_pb2.GetCompletionsRequest) -> str | None:
    """The text of the `tool` messages that end the conversation, if any."""
    results: list[str] = []
    for message in reversed(request.messages):
        if message.role != chat_pb2.MessageRole.ROLE_TOOL:
            break
        results.insert(0, "".join(part.text for part in message.content))
    return "; ".join(results) if results else None


def _tool_call(response_id: str, call: tools.Call) -> chat_pb2.ToolCall:
    return chat_pb2.ToolCall(
        id=f"call_{response_id[-12:]}0",
        type=chat_pb2.TOOL_CALL_TYPE_CLIENT_SIDE_TOOL,
        status=chat_pb2.TOOL_CALL_STATUS_COMPLETED,
        function=chat_pb2.FunctionCall(name=call.name, arguments=call.arguments_json),
    )


def _finish(turn: Turn) -> sample_pb2.FinishReason:
    return sample_pb2.REASON_TOOL_CALLS if turn.call is not None else sample_pb2.REASON_STOP


def _usage(
    request: chat_pb2.GetCompletionsRequest, turn: Turn, directives: dict[str, str]
) -> usage_pb2.SamplingUsage:
    """Tokens (about four request bytes a token, as on HTTP) and their price in ticks."""
    prompt = max(1, request.ByteSize() // 4)
    completion = len(turn.pieces) + (1 if turn.call else 0)
    reasoning = len(turn.reasoning)
    cached = min(prompt, number(directives, "cached"))
    used = [SERVER_SIDE_TOOLS[kind] for kind in turn.server_tools]
    cost = catalog.token_cost(prompt, completion, reasoning, cached, len(used))
    return usage_pb2.SamplingUsage(
        prompt_tokens=prompt,
        prompt_text_tokens=prompt,
        cached_prompt_text_tokens=cached,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        total_tokens=prompt + completion + reasoning,
        server_side_tools_used=used,
        cost_in_usd_ticks=number(directives, "cost", cost),
    )


def _created() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(catalog.CREATED)
    return stamp


def _language_model(name: str) -> models_pb2.LanguageModel:
    model = catalog.find(name)
    prices = catalog.LANGUAGE_PRICES
    return models_pb2.LanguageModel(
        name=name,
        aliases=list(model.aliases) if model else [],
        version="1.0",
        input_modalities=[models_pb2.Modality.TEXT],
        output_modalities=[models_pb2.Modality.TEXT],
        prompt_text_token_price=prices["prompt_text_token_price"],
        prompt_image_token_price=prices["prompt_image_token_price"],
        cached_prompt_token_price=prices["cached_prompt_text_token_price"],
        completion_text_token_price=prices["completion_text_token_price"],
        created=_created(),
        max_prompt_length=131072,
        system_fingerprint=catalog.FINGERPRINT,
    )


def _image_model(model: catalog.Model) -> models_pb2.ImageGenerationModel:
    return models_pb2.ImageGenerationModel(
        name=model.id,
        aliases=list(model.aliases),
        version="1.0",
        input_modalities=[models_pb2.Modality.TEXT, models_pb2.Modality.IMAGE],
        output_modalities=[models_pb2.Modality.IMAGE],
        image_price=catalog.IMAGE_PRICE_CENTS,
        created=_created(),
        max_prompt_length=1024,
        system_fingerprint=catalog.FINGERPRINT,
    )


def _embedding_model(model: catalog.Model) -> models_pb2.EmbeddingModel:
    prices = catalog.EMBEDDING_PRICES
    return models_pb2.EmbeddingModel(
        name=model.id,
        aliases=list(model.aliases),
        version="1.0",
        input_modalities=[models_pb2.Modality.TEXT],
        output_modalities=[models_pb2.Modality.EMBEDDING],
        prompt_text_token_price=prices["prompt_text_token_price"],
        prompt_image_token_price=prices["prompt_image_token_price"],
        created=_created(),
        system_fingerprint=catalog.FINGERPRINT,
    )


async def start(simulator: Simulator, host: str, port: int) -> grpc.aio.Server:
    """Serve the simulator's gRPC services on host:port (the SDK's limits and keepalive)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(GrpcSimulator(simulator).handlers())
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
