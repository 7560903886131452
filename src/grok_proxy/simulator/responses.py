"""The Responses API: output items, the complete event stream, stored responses and chaining."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from grok_proxy.simulator import catalog, tools
from grok_proxy.simulator.chat import Turn, plan, structured_text
from grok_proxy.simulator.core import JSON, Kit, named_event, now, number, ok, xai_error
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest


def response_turn(body: JSON, model: str, directives: dict[str, str]) -> Turn:
    offered = tools.responses_offered(body)
    choice = body.get("tool_choice")
    text = body.get("text")
    reasoning = body.get("reasoning")
    turn = plan(
        model,
        directives,
        call=tools.choose(offered, choice, tools.responses_forced(choice)),
        tool_result=tools.responses_tool_result(body),
        structured=structured_text(text.get("format") if isinstance(text, dict) else None),
        effort=reasoning.get("effort") if isinstance(reasoning, dict) else None,
    )
    turn.server_tools = tools.server_side_offered(body)
    return turn


def output_items(response_id: str, turn: Turn, status: str = "completed") -> list[JSON]:
    """Reasoning first (if any), then the function call or the message."""
    suffix = response_id.removeprefix("resp_")
    items: list[JSON] = []
    if "web_search" in turn.server_tools:
        # What a search looked like; the other server-side tools only show in usage.
        action = {
            "type": "search",
            "query": "grok-proxy simulator",
            "sources": [{"type": "url", "url": "https://example.com/"}],
        }
        search = {"id": f"ws_{suffix}", "type": "web_search_call", "status": status}
        items.append({**search, "action": action})
    if turn.reasoning:
        summary = [{"type": "summary_text", "text": "".join(turn.reasoning)}]
        items.append(
            {"id": f"rs_{suffix}", "type": "reasoning", "summary": summary, "status": status}
        )
    if turn.call is not None:
        items.append(
            {
                "id": f"fc_{suffix}",
                "type": "function_call",
                "call_id": f"call_{suffix[-12:]}0",
                "name": turn.call.name,
                "arguments": turn.call.arguments_json,
                "status": status,
            }
        )
    else:
        items.append(
            {
                "id": f"msg_{suffix}",
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": [output_text(turn.text)],
            }
        )
    return items


def output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def model_response(
    response_id: str,
    model: str,
    body: JSON,
    turn: Turn,
    directives: dict[str, str] | None = None,
) -> JSON:
    """A complete `ModelResponse`, usage priced in ticks (`cost=N`, `cached=N` set them)."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {
        "id": response_id,
        "object": "response",
        "created_at": now(),
        "model": model,
        "status": "completed",
        "output": output_items(response_id, turn),
        "instructions": body.get("instructions"),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True) is not False,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": text,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "reasoning": body.get("reasoning"),
        "metadata": body.get("metadata") or {},
        "prompt_cache_key": body.get("prompt_cache_key"),
        "error": None,
        "incomplete_details": None,
        # Accepted for OpenResponses compatibility; xAI echoes them with these values.
        "background": False,
        "service_tier": "default",
        "truncation": "disabled",
        "top_logprobs": body.get("top_logprobs") or 0,
        "presence_penalty": body.get("presence_penalty") or 0,
        "frequency_penalty": body.get("frequency_penalty") or 0,
        "usage": response_usage(body, turn, directives or {}),
    }


def response_usage(body: JSON, turn: Turn, directives: dict[str, str]) -> JSON:
    """Responses usage: reasoning is part of output_tokens here, unlike Chat Completions."""
    reasoning = len(turn.reasoning)
    output_tokens = len(turn.pieces) + (1 if turn.call else 0) + reasoning
    input_tokens = max(1, len(str(body.get("input", ""))) // 4)
    cached = min(input_tokens, number(directives, "cached"))
    used = len(turn.server_tools)
    cost = catalog.token_cost(input_tokens, output_tokens - reasoning, reasoning, cached, used)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
        "num_sources_used": 0,
        "num_server_side_tools_used": used,
        "server_side_tool_usage_details": tools.server_side_details(turn.server_tools),
        "cost_in_usd_ticks": number(directives, "cost", cost),
    }


class EventWriter:
    """Named Responses events, each with its `type` and the next `sequence_number`."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.first_delta: int | None = None

    def __call__(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(self.events), **fields}
        if self.first_delta is None and kind.endswith(".delta"):
            self.first_delta = len(self.events)
        self.events.append(named_event(kind, payload))


def response_events(done: JSON, turn: Turn) -> tuple[list[bytes], int]:
    """The whole OpenAI-style event sequence, and how many events precede the first delta."""
    emit = EventWriter()
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(done["output"]):
        kind = item["type"]
        opened = {**item, "status": "in_progress"}
        ids = {"item_id": item["id"], "output_index": index}
        if kind == "reasoning":
            emit("response.output_item.added", output_index=index, item={**opened, "summary": []})
            part = {"type": "summary_text", "text": ""}
            emit("response.reasoning_summary_part.added", **ids, summary_index=0, part=part)
            for piece in turn.reasoning:
                emit("response.reasoning_summary_text.delta", **ids, summary_index=0, delta=piece)
            text = item["summary"][0]["text"]
            emit("response.reasoning_summary_text.done", **ids, summary_index=0, text=text)
            part = {"type": "summary_text", "text": text}
            emit("response.reasoning_summary_part.done", **ids, summary_index=0, part=part)
        elif kind == "web_search_call":
            emit("response.output_item.added", output_index=index, item=opened)
            for step in ("in_progress", "searching", "completed"):
                emit(f"response.web_search_call.{step}", **ids)
        elif kind == "function_call":
            emit("response.output_item.added", output_index=index, item={**opened, "arguments": ""})
            arguments = item["arguments"]
            emit("response.function_call_arguments.delta", **ids, delta=arguments)
            emit("response.function_call_arguments.done", **ids, arguments=arguments)
        else:
            emit("response.output_item.added", output_index=index, item={**opened, "content": []})
            where = {**ids, "content_index": 0}
            emit("response.content_part.added", **where, part=output_text(""))
            for piece in turn.pieces:
                emit("response.output_text.delta", **where, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, text=turn.text, logprobs=[])
            emit("response.content_part.done", **where, part=output_text(turn.text))
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=done)
    return emit.events, emit.first_delta or 0


class Responses:
    """POST /v1/responses, GET and DELETE /v1/responses/{id}."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.stored: dict[str, JSON] = {}

    def clear(self) -> None:
        self.stored.clear()

    def create(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "input", model_required=False)
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        if body.get("search_parameters") is not None:
            return xai_error(
                410, "Live search is deprecated. Please switch to the Agent Tools API."
            )
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return xai_error(404, f"Response with id {previous} not found.")
        turn = response_turn(body, model, directives)
        response_id = "resp_" + self.kit.next_id()
        response = model_response(response_id, model, body, turn, directives)
        if body.get("store", True) is not False:
            self.stored[response_id] = response
        if body.get("stream"):
            events, head = response_events(response, turn)
            return self.kit.answer(directives, lambda: self.kit.stream(events, directives, head))
        return self.kit.answer(directives, lambda: ok(response))

    def retrieve(self, request: SimRequest, response_id: str) -> Outcome:
        response = self.stored.get(response_id)
        if response is None:
            return xai_error(404, f"Response with id {response_id} not found.")
        return ok(response)

    def delete(self, request: SimRequest, response_id: str) -> Outcome:
        if self.stored.pop(response_id, None) is None:
            return xai_error(404, f"Response with id {response_id} not found.")
        return ok({"id": response_id, "object": "response", "deleted": True})
