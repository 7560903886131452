"""The simulator's gRPC side: the services `xai-sdk` uses most, from the SDK's own protos.

Message classes come from `xai_sdk.proto.v6` (xai-sdk is a dependency): they are exactly
what the SDK sends and expects, with no code generation step to keep in sync.

Faults ride in the model name as on HTTP (`grok-4@status=429`, `delay`, `chunks`, `pace`,
`cut`, `stall`); an HTTP status becomes the gRPC code xAI uses for it. Calls land in the
same request log and counters as HTTP ones (`/_sim/requests`, `/_sim/stats`), with the
method as `path`, the metadata as `headers` and the request message as JSON `body`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from xai_sdk.proto.v6 import (
    chat_pb2,
    embed_pb2,
    image_pb2,
    models_pb2,
    sample_pb2,
    tokenize_pb2,
    usage_pb2,
)

from grok_proxy.simulator import shapes
from grok_proxy.simulator.core import ERROR_TEXTS, number, split_model
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
        if not shapes.known_model(model):
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
    async def completion(self, request: chat_pb2.GetCompletionsRequest) -> Any:
        model, directives = self.model(request.model)
        await self.faults(directives)
        text = "".join(shapes.words(number(directives, "chunks")))
        return chat_pb2.GetChatCompletionResponse(
            id=self.sim.next_id(),
            model=model,
            created=now(),
            system_fingerprint=shapes.FINGERPRINT,
            outputs=[
                chat_pb2.CompletionOutput(
                    index=0,
                    finish_reason=sample_pb2.FinishReason.REASON_STOP,
                    message=chat_pb2.CompletionMessage(
                        content=text, role=chat_pb2.MessageRole.ROLE_ASSISTANT
                    ),
                )
            ],
            usage=_usage(request, len(text.split())),
        )

    async def chunks(
        self, request: chat_pb2.GetCompletionsRequest, context: Context
    ) -> AsyncIterator[chat_pb2.GetChatCompletionChunk]:
        """GetCompletionChunk: one chunk per piece; pace, cut and stall as on HTTP."""
        try:
            self.admit("/xai_api.Chat/GetCompletionChunk", request, context)
            model, directives = self.model(request.model)
            await self.faults(directives)
        except Refused as refused:
            await context.abort(refused.code, refused.details)
        self.sim.count("streams_started")
        response_id = self.sim.next_id()
        pieces = shapes.words(number(directives, "chunks"))
        pace = number(directives, "pace") / 1000
        cut = number(directives, "cut", -1)
        stall = number(directives, "stall", -1)
        try:
            for index, piece in enumerate(pieces):
                if pace:
                    await asyncio.sleep(pace)
                if index == cut:
                    self.sim.count("streams_cut")
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE, "The simulator cut the stream."
                    )
                if index == stall:
                    await asyncio.Event().wait()
                last = index == len(pieces) - 1
                yield chat_pb2.GetChatCompletionChunk(
                    id=response_id,
                    model=model,
                    created=now(),
                    system_fingerprint=shapes.FINGERPRINT,
                    outputs=[
                        chat_pb2.CompletionOutputChunk(
                            index=0,
                            delta=chat_pb2.Delta(
                                content=piece, role=chat_pb2.MessageRole.ROLE_ASSISTANT
                            ),
                            finish_reason=sample_pb2.FinishReason.REASON_STOP
                            if last
                            else sample_pb2.FinishReason.REASON_INVALID,
                        )
                    ],
                    usage=_usage(request, len(pieces)) if last else None,
                )
        except asyncio.CancelledError:
            self.sim.count("streams_cancelled")
            raise
        self.sim.count("streams_completed")

    # Models
    async def language_models(self, request: empty_pb2.Empty) -> Any:
        return models_pb2.ListLanguageModelsResponse(
            models=[_language_model(entry["id"]) for entry in shapes.MODELS]
        )

    async def language_model(self, request: models_pb2.GetModelRequest) -> Any:
        for entry in shapes.MODELS:
            if entry["id"] == request.name:
                return _language_model(entry["id"])
        raise Refused(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.name}")

    # Tokenize
    async def tokenize(self, request: tokenize_pb2.TokenizeTextRequest) -> Any:
        model, directives = self.model(request.model)
        await self.faults(directives)
        found = shapes.tokens(request.text)["token_ids"]
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
        answer = shapes.images(
            request.prompt,
            request.n or 1,
            "b64_json" if request.format == image_pb2.ImageFormat.IMG_FORMAT_BASE64 else "url",
            self.sim.sequence,
        )
        return image_pb2.ImageResponse(
            model=model,
            images=[
                # url and base64 are one field (a oneof): set only the one there is.
                image_pb2.GeneratedImage(url=item["url"], respect_moderation=True)
                if "url" in item
                else image_pb2.GeneratedImage(base64=item["b64_json"], respect_moderation=True)
                for item in answer["data"]
            ],
        )

    # Embedder
    async def embed(self, request: embed_pb2.EmbedRequest) -> Any:
        model, directives = self.model(request.model or "v1")
        await self.faults(directives)
        texts = [item.string for item in request.input]
        answer = shapes.embeddings(model, texts, 8, "float")
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


def _usage(
    request: chat_pb2.GetCompletionsRequest, completion_tokens: int
) -> usage_pb2.SamplingUsage:
    prompt = max(1, request.ByteSize() // 4)  # about four bytes a token, as on HTTP
    return usage_pb2.SamplingUsage(
        prompt_tokens=prompt,
        prompt_text_tokens=prompt,
        completion_tokens=completion_tokens,
        total_tokens=prompt + completion_tokens,
    )


def _language_model(name: str) -> models_pb2.LanguageModel:
    return models_pb2.LanguageModel(
        name=name,
        version="1.0",
        input_modalities=[models_pb2.Modality.TEXT],
        output_modalities=[models_pb2.Modality.TEXT],
        max_prompt_length=131072,
        system_fingerprint=shapes.FINGERPRINT,
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
