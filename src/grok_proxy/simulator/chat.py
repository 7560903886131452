"""Chat Completions (plain, streamed, deferred), legacy text completions, and what a turn says."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson

from grok_proxy.simulator import catalog, tools
from grok_proxy.simulator.core import (
    JSON,
    REPLY_PAD,
    Kit,
    chunked,
    data_event,
    now,
    number,
    ok,
    reply_pieces,
    xai_error,
)
from grok_proxy.simulator.instances import instance
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest

REASONING_TEXT = "The user wants an answer. I will answer plainly and briefly."
LIVE_SEARCH_GONE = "Live search is deprecated. Please switch to the Agent Tools API."


@dataclass(slots=True)
class Turn:
    """What the simulated model does in one turn: think, then call a tool or say something."""

    pieces: list[str]
    reasoning: list[str]
    call: tools.Call | None = None
    # Server-side tools (web search, code execution...) xAI ran during the turn, by kind.
    server_tools: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def structured_text(response_format: Any) -> str | None:
    """The JSON a `json_schema` or `json_object` format asks for (None for plain text)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        # Chat nests the schema under `json_schema`; Responses' `text.format` holds it directly.
        holder = response_format.get("json_schema", response_format)
        schema = holder.get("schema") if isinstance(holder, dict) else None
        return orjson.dumps(instance(schema or {"type": "object"})).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": catalog.REPLY_TEXT}).decode()
    return None


def plan(
    model: str,
    directives: dict[str, str],
    *,
    call: tools.Call | None,
    tool_result: str | None,
    structured: str | None,
    effort: Any = None,
) -> Turn:
    """The turn for a request: reasoning (if the model reasons), then a call or an answer."""
    count = number(directives, "chunks")
    reasoning = []
    if catalog.reasons(model) and effort != "none":
        reasoning = chunked(REASONING_TEXT, 0)
    if tool_result is None and call is not None:
        return Turn([], reasoning, call)
    if structured is not None:
        return Turn(chunked(structured, count), reasoning)
    if tool_result is not None:
        return Turn(chunked(tools.result_answer(tool_result), count), reasoning)
    return Turn(reply_pieces(count), reasoning)


def chat_turn(body: JSON, model: str, directives: dict[str, str]) -> Turn:
    offered = tools.chat_offered(body)
    choice = body.get("tool_choice")
    return plan(
        model,
        directives,
        call=tools.choose(offered, choice, tools.chat_forced(choice)),
        tool_result=tools.chat_tool_result(body),
        structured=structured_text(body.get("response_format")),
        effort=body.get("reasoning_effort"),
    )


def usage(
    body: JSON,
    completion_tokens: int,
    reasoning_tokens: int = 0,
    directives: dict[str, str] | None = None,
) -> JSON:
    """Chat usage as xAI reports it, priced in ticks (`cost=N` and `cached=N` set them)."""
    directives = directives or {}
    prompt_tokens = max(1, len(orjson.dumps(body.get("messages", body.get("prompt", "")))) // 4)
    cached = min(prompt_tokens, number(directives, "cached"))
    cost = catalog.token_cost(prompt_tokens, completion_tokens, reasoning_tokens, cached)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        # xAI counts reasoning tokens in the total but not in completion_tokens.
        "total_tokens": prompt_tokens + completion_tokens + reasoning_tokens,
        "prompt_tokens_details": {
            "text_tokens": prompt_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": cached,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "num_sources_used": 0,
        "cost_in_usd_ticks": number(directives, "cost", cost),
    }


def turn_usage(body: JSON, turn: Turn, directives: dict[str, str]) -> JSON:
    """The usage of one chat turn: its pieces (a tool call counts one) and its reasoning."""
    completion = len(turn.pieces) + (1 if turn.call else 0)
    return usage(body, completion, len(turn.reasoning), directives)


def call_id(response_id: str, index: int = 0) -> str:
    return f"call_{response_id[-12:]}{index}"


def chat_completion(response_id: str, model: str, turn: Turn, usage: JSON) -> JSON:
    message: JSON = {"role": "assistant", "content": turn.text, "refusal": None}
    if turn.reasoning:
        message["reasoning_content"] = "".join(turn.reasoning)
    finish = "stop"
    if turn.call is not None:
        message["tool_calls"] = [tool_call(response_id, turn.call)]
        finish = "tool_calls"
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
        "system_fingerprint": catalog.FINGERPRINT,
    }


def tool_call(response_id: str, call: tools.Call) -> JSON:
    return {
        "id": call_id(response_id),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def chat_events(response_id: str, model: str, turn: Turn, usage: JSON | None) -> list[bytes]:
    """xAI's framing: role chunk, reasoning, content or one whole tool call, finish, usage, DONE."""
    head = {"id": response_id, "object": "chat.completion.chunk", "created": now(), "model": model}

    def chunk(choices: list[JSON], **extra: Any) -> bytes:
        payload = {**head, "choices": choices, **extra, "system_fingerprint": catalog.FINGERPRINT}
        return data_event(payload)

    events = [chunk([{"index": 0, "delta": {"role": "assistant"}}])]
    events += [chunk([{"index": 0, "delta": {"reasoning_content": p}}]) for p in turn.reasoning]
    events += [chunk([{"index": 0, "delta": {"content": piece}}]) for piece in turn.pieces]
    finish = "stop"
    if turn.call is not None:
        # xAI sends each tool call whole, in one chunk, with its index.
        call = {"index": 0, **tool_call(response_id, turn.call)}
        events.append(chunk([{"index": 0, "delta": {"tool_calls": [call]}}]))
        finish = "tool_calls"
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
    if usage is not None:
        events.append(chunk([], usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


class Chat:
    """POST /v1/chat/completions, GET /v1/chat/deferred-completion/{id}, POST /v1/completions."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.deferred: dict[str, JSON] = {}

    def clear(self) -> None:
        self.deferred.clear()

    def completions(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "messages")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        if body.get("search_parameters") is not None:
            return xai_error(410, LIVE_SEARCH_GONE)
        response_id = self.kit.next_id() + "_us-east-1"
        turn = chat_turn(body, model, directives)
        if body.get("deferred"):
            self.deferred[response_id] = {
                "model": model,
                "body": body,
                "pending": "pending" in directives,
                "directives": directives,
            }
            return self.kit.answer(directives, lambda: ok({"request_id": response_id}))
        spent = turn_usage(body, turn, directives)
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = chat_events(response_id, model, turn, spent if wants_usage else None)
            return self.kit.answer(directives, lambda: self.kit.stream(events, directives))
        size = number(directives, "size")
        if size:
            turn.pieces = [(REPLY_PAD * (size // len(REPLY_PAD) + 1))[:size]]
        completion = chat_completion(response_id, model, turn, spent)
        return self.kit.answer(directives, lambda: ok(completion))

    def deferred_completion(self, request: SimRequest, request_id: str) -> Outcome:
        entry = self.deferred.get(request_id)
        if entry is None:
            return xai_error(404, f"No deferred request {request_id}, or it was already fetched.")
        if entry["pending"]:
            return Reply(202, b"")
        del self.deferred[request_id]
        turn = chat_turn(entry["body"], entry["model"], entry["directives"])
        spent = turn_usage(entry["body"], turn, entry["directives"])
        return ok(chat_completion(request_id, entry["model"], turn, spent))

    def text_completions(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "prompt")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        pieces = reply_pieces(number(directives, "chunks"))
        response_id = self.kit.next_id()
        if body.get("stream"):
            events = text_completion_events(response_id, model, pieces)
            return self.kit.answer(directives, lambda: self.kit.stream(events, directives, head=0))
        spent = usage(body, len(pieces), directives=directives)
        completion = text_completion(response_id, model, pieces, spent)
        return self.kit.answer(directives, lambda: ok(completion))


def text_completion(response_id: str, model: str, pieces: list[str], usage: JSON) -> JSON:
    return {
        "id": response_id,
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "text": "".join(pieces), "finish_reason": "stop"}],
        "usage": usage,
        "system_fingerprint": catalog.FINGERPRINT,
    }


def text_completion_events(response_id: str, model: str, pieces: list[str]) -> list[bytes]:
    head = {"id": response_id, "object": "text_completion", "created": now(), "model": model}
    events = [data_event({**head, "choices": [{"index": 0, "text": p}]}) for p in pieces]
    events.append(
        data_event({**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    )
    events.append(b"data: [DONE]\n\n")
    return events
