"""The gRPC side of a shared proxy: each call checked, scoped and counted like an HTTP request.

The relay (grpc_relay.py) moves raw bytes and knows no message types. In shared mode it
hands each call's request message and its answer messages to a `CallGate`, which decodes
only the methods listed in `METHODS`, with xai-sdk's own message classes (exactly what the
SDK sends): the model and the objects a request names before anything goes upstream, and
the usage and new object ids of the answers. A method not listed is refused, as HTTP
refuses a path it does not know to be safe to share (teams/scope.py).

Every method carries the name of the HTTP route that does the same thing, so one allow-list
(`--routes chat/completions`) covers the REST API, the WebSocket API and the SDK's gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from xai_sdk.proto.v6 import (
    chat_pb2,
    deferred_pb2,
    embed_pb2,
    image_pb2,
    models_pb2,
    sample_pb2,
    tokenize_pb2,
    video_pb2,
)

from grok_proxy.calls.auth import Caller
from grok_proxy.calls.errors import InvalidRequest, ProxyError
from grok_proxy.calls.usage import Usage, from_grpc
from grok_proxy.teams.errors import NotAllowed
from grok_proxy.teams.members import Member
from grok_proxy.teams.scope import references
from grok_proxy.teams.team import Admission, MemberCaller, Team

# The gRPC status for each answer a shared proxy gives before anything goes upstream (the
# codes xAI's own gRPC API uses for the same HTTP statuses).
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class Method:
    """What a shared proxy knows about one gRPC method."""

    route: str  # the HTTP route (below /api/v1) doing the same, for allow-lists
    request: type[Message]
    answer: type[Message] | None = None  # decoded for usage and new ids; None: not read
    creates: str | None = None  # kind of object the answer names (`id` / `request_id`)
    reads: str | None = None  # kind of object the request names: owner only
    counts_usage: bool = True  # False where the answer repeats usage counted before


_COMPLETIONS = chat_pb2.GetCompletionsRequest
METHODS: dict[str, Method] = {
    "/xai_api.Chat/GetCompletion": Method(
        "chat/completions", _COMPLETIONS, chat_pb2.GetChatCompletionResponse, creates="response"
    ),
    "/xai_api.Chat/GetCompletionChunk": Method(
        "chat/completions", _COMPLETIONS, chat_pb2.GetChatCompletionChunk, creates="response"
    ),
    "/xai_api.Chat/StartDeferredCompletion": Method(
        "chat/completions", _COMPLETIONS, deferred_pb2.StartDeferredResponse, creates="deferred"
    ),
    # As on HTTP, a deferred completion's tokens are counted when its result is read.
    "/xai_api.Chat/GetDeferredCompletion": Method(
        "chat/deferred-completion",
        deferred_pb2.GetDeferredRequest,
        chat_pb2.GetDeferredCompletionResponse,
        reads="deferred",
    ),
    "/xai_api.Chat/GetStoredCompletion": Method(
        "responses", chat_pb2.GetStoredCompletionRequest, reads="response", counts_usage=False
    ),
    "/xai_api.Chat/DeleteStoredCompletion": Method(
        "responses", chat_pb2.DeleteStoredCompletionRequest, reads="response", counts_usage=False
    ),
    "/xai_api.Chat/CompactContext": Method(
        "chat/completions", chat_pb2.CompactContextRequest, chat_pb2.CompactContextResponse
    ),
    "/xai_api.Sample/SampleText": Method(
        "completions", sample_pb2.SampleTextRequest, sample_pb2.SampleTextResponse
    ),
    "/xai_api.Sample/SampleTextStreaming": Method(
        "completions", sample_pb2.SampleTextRequest, sample_pb2.SampleTextResponse
    ),
    "/xai_api.Embedder/Embed": Method("embeddings", embed_pb2.EmbedRequest),
    "/xai_api.Tokenize/TokenizeText": Method("tokenize-text", tokenize_pb2.TokenizeTextRequest),
    "/xai_api.Image/GenerateImage": Method("images/generations", image_pb2.GenerateImageRequest),
    "/xai_api.Video/GenerateVideo": Method(
        "videos/generations",
        video_pb2.GenerateVideoRequest,
        deferred_pb2.StartDeferredResponse,
        creates="video",
    ),
    "/xai_api.Video/ExtendVideo": Method(
        "videos/extensions",
        video_pb2.ExtendVideoRequest,
        deferred_pb2.StartDeferredResponse,
        creates="video",
    ),
    "/xai_api.Video/GetDeferredVideo": Method(
        "videos", video_pb2.GetDeferredVideoRequest, reads="video"
    ),
    # Catalogues: the `name` of GetLanguageModel is the model asked about, not one used.
    "/xai_api.Models/ListLanguageModels": Method("language-models", empty_pb2.Empty),
    "/xai_api.Models/GetLanguageModel": Method("language-models", models_pb2.GetModelRequest),
    "/xai_api.Models/ListEmbeddingModels": Method("embedding-models", empty_pb2.Empty),
    "/xai_api.Models/GetEmbeddingModel": Method("embedding-models", models_pb2.GetModelRequest),
    "/xai_api.Models/ListImageGenerationModels": Method("image-generation-models", empty_pb2.Empty),
    "/xai_api.Models/GetImageGenerationModel": Method(
        "image-generation-models", models_pb2.GetModelRequest
    ),
}
# Fields holding the id of the object a request reads (`reads`) or an answer creates.
ID_FIELDS = ("response_id", "request_id", "id")
# Methods whose request names the model used (catalogue requests name one to describe).
CATALOGUE = "/xai_api.Models/"


def status_of(error: ProxyError) -> tuple[grpc.StatusCode, str, list[tuple[str, str | bytes]]]:
    """The gRPC code, details and trailing metadata that say what `error` says on HTTP."""
    code = CODES.get(error.status, grpc.StatusCode.UNKNOWN)
    details = error.message
    retry_after = error.headers.get("retry-after")
    if retry_after:
        details = f"{details} Retry after {retry_after} s."
        return code, details, [("retry-after", retry_after)]
    return code, details, []


def usage_of(usage: Any) -> Usage:
    """xai-sdk's SamplingUsage in grok_proxy.calls.usage's shape (xAI's cost included)."""
    return from_grpc(usage)


def has_unknown_fields(message: Message) -> bool:
    """Whether a decoded message, or any message inside it, kept fields it does not know."""
    stack = [message]
    while stack:
        current = stack.pop()
        if len(UnknownFieldSet(current)):
            return True
        for field, value in current.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                values = value.values()
                if field.message_type.fields_by_name["value"].message_type is None:
                    continue
                stack.extend(values)
            elif field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
    return False


def call_gate(team: Team, caller: Caller, method: str) -> CallGate:
    """The gate of one call by an admitted caller (a member: the team's auth admitted it)."""
    assert isinstance(caller, MemberCaller)
    return CallGate(team, caller.member, method)


class CallGate:
    """One member's gRPC call: checked before it goes upstream, counted once when it ends."""

    def __init__(self, team: Team, member: Member, method: str) -> None:
        self.team = team
        self.member = member
        self.method_name = method
        self.method = METHODS.get(method)
        self.model: str | None = None
        self.usage: Usage | None = None
        self.admission: Admission | None = None
        self.claims = False  # whether the answer's id becomes the member's object
        self.claimed = False
        self.recorded = False

    async def admit(self, request: object) -> None:
        """Refuse (ProxyError) before the upstream call, or take the member's turn.

        `request` is the caller's first message (the END marker when it sent none).
        """
        method = self.method
        if method is None:
            raise NotAllowed(
                f"The gRPC method {self.method_name} is not available through this shared "
                "proxy: it is not known to keep each member's objects apart.",
                code="route_not_shared",
            )
        data: dict[str, Any] = {}
        if isinstance(request, bytes):
            try:
                message = method.request.FromString(request)
            except DecodeError:
                raise InvalidRequest(
                    f"The request is not a valid {method.request.DESCRIPTOR.full_name} message."
                ) from None
            if has_unknown_fields(message):
                # Fields this proxy's copy of xAI's protos does not know could name a model
                # or another member's object that xAI would read: not relayed unchecked.
                raise InvalidRequest(
                    f"The {method.request.DESCRIPTOR.full_name} message has fields this "
                    "shared proxy does not know, so it cannot check them."
                )
            data = json_format.MessageToDict(message, preserving_proto_field_name=True)
        model = data.get("model")
        if isinstance(model, str) and model and not self.method_name.startswith(CATALOGUE):
            self.model = model
        names_model = "model" in method.request.DESCRIPTOR.fields_by_name
        if self.model is None and names_model and self.member.limits.models:
            # Without a model xAI uses a default one, which the member may not be allowed.
            raise NotAllowed(
                f"Member {self.member.name} is limited to some models: name one of them as "
                "`model`.",
                code="model_not_allowed",
                param="model",
            )
        named = references(data)
        if method.reads is not None:
            object_id = next((data[f] for f in ID_FIELDS if isinstance(data.get(f), str)), "")
            named.insert(0, (method.reads, object_id))
        await self.team.require_all(self.member, named)
        if method.creates == "response":
            # A chat completion is kept by xAI (and readable by its id) only when asked to.
            self.claims = data.get("store_messages") is True
        else:
            self.claims = method.creates is not None
        deferred = method.creates == "deferred"  # refused to budgeted members, as on HTTP
        # A budgeted member's request reserves its own max_tokens, as on HTTP.
        self.admission = await self.team.check(
            self.member, method.route, self.model, deferred=deferred, body=data
        )

    async def answer(self, message: bytes) -> None:
        """Read one answer message: the usage it reports, the object it creates."""
        method = self.method
        if method is None or method.answer is None:
            return
        try:
            answer: Any = method.answer.FromString(message)
        except DecodeError:
            return  # relayed as it is; the caller's SDK reports it
        # A deferred completion's result holds the completion (and its usage) inside.
        deferred = method.answer is chat_pb2.GetDeferredCompletionResponse
        inner: Any = answer.response if deferred else answer
        if method.counts_usage and "usage" in inner.DESCRIPTOR.fields_by_name:
            # A stream's chunks carry the usage so far; the last one carrying it counts.
            if inner.HasField("usage"):
                self.usage = usage_of(inner.usage)
            if self.model is None and getattr(inner, "model", None):
                self.model = inner.model
        if self.claims and not self.claimed:
            object_id = next((getattr(answer, f) for f in ID_FIELDS if getattr(answer, f, "")), "")
            if object_id:
                self.claimed = True
                await self.team.claim(self.member, method.creates or "", [object_id])

    async def finish(self) -> None:
        """Count the call once (also when it failed or was cancelled) and give its turn back."""
        if self.recorded or self.admission is None:
            return
        self.recorded = True
        await self.team.record_usage(self.member, self.model, self.usage, self.admission)


class TeamCalls:
    """The team's gRPC policy (policies.CallPolicy): members' calls."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.auth = team.caller_auth()

    def gate(self, caller: Caller, method: str) -> CallGate:
        return call_gate(self.team, caller, method)

    def status_of(
        self, error: ProxyError
    ) -> tuple[grpc.StatusCode, str, list[tuple[str, str | bytes]]]:
        return status_of(error)
