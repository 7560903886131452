"""Anthropic-compatible Messages: text, `tool_use` blocks (plain and streamed), token counts."""

from __future__ import annotations

from collections.abc import Awaitable

import orjson

from grok_proxy.simulator import tools
from grok_proxy.simulator.chat import Turn, plan
from grok_proxy.simulator.core import JSON, Kit, named_event, ok
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest


def message_turn(body: JSON, model: str, directives: dict[str, str]) -> Turn:
    kind, forced = tools.anthropic_choice(body.get("tool_choice"))
    turn = plan(
        model,
        directives,
        call=tools.choose(tools.anthropic_offered(body), kind, forced),
        tool_result=tools.anthropic_tool_result(body),
        structured=None,
    )
    # Thinking blocks need a signature the simulator cannot make: the reasoning stays hidden.
    turn.reasoning = []
    return turn


def input_tokens(body: JSON) -> int:
    return max(1, len(orjson.dumps([body.get("system"), body.get("messages")])) // 4)


def tool_use_id(message_id: str) -> str:
    return f"toolu_{message_id[-12:]}"


def message(message_id: str, model: str, turn: Turn, tokens: int) -> JSON:
    content: list[JSON] = []
    if turn.call is not None:
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(message_id),
                "name": turn.call.name,
                "input": turn.call.arguments,
            }
        )
    else:
        content.append({"type": "text", "text": turn.text})
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": "tool_use" if turn.call else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": len(turn.pieces) + (1 if turn.call else 0),
        },
    }


def message_events(message_id: str, model: str, turn: Turn, tokens: int) -> list[bytes]:
    """Anthropic's named events: message_start, one block, message_delta, message_stop."""
    done = message(message_id, model, turn, tokens)
    start = {**done, "content": [], "stop_reason": None}
    start["usage"] = {**done["usage"], "output_tokens": 0}
    events = [named_event("message_start", {"type": "message_start", "message": start})]
    if turn.call is not None:
        block = {**done["content"][0], "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": turn.call.arguments_json}]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in turn.pieces]
    events.append(
        named_event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
    )
    events += [
        named_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        for d in deltas
    ]
    events += [
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": done["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": done["usage"]["output_tokens"]},
            },
        ),
        named_event("message_stop", {"type": "message_stop"}),
    ]
    return events


class Messages:
    """POST /v1/messages and POST /v1/messages/count_tokens."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    def create(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "messages", "max_tokens")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        turn = message_turn(body, model, directives)
        message_id = "msg_" + self.kit.next_id()
        tokens = input_tokens(body)
        if body.get("stream"):
            events = message_events(message_id, model, turn, tokens)
            return self.kit.answer(directives, lambda: self.kit.stream(events, directives, head=2))
        answer = message(message_id, model, turn, tokens)
        return self.kit.answer(directives, lambda: ok(answer))

    def count_tokens(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "messages")
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        return self.kit.answer(directives, lambda: ok({"input_tokens": input_tokens(body)}))
