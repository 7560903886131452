"""Anthropic-compatible Messages (text, thinking and `tool_use` blocks, plain and streamed),
token counts, and the legacy `/v1/complete`."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable
from typing import Any

import orjson

from grok_proxy.simulator import catalog, tools
from grok_proxy.simulator.chat import Turn, plan
from grok_proxy.simulator.core import JSON, Kit, named_event, number, ok, reply_pieces
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
    # As at Anthropic, thinking is shown only to a caller who turned it on.
    if not thinks(body.get("thinking")):
        turn.reasoning = []
    return turn


def thinks(thinking: Any) -> bool:
    """Whether the request's `thinking` turns extended thinking on."""
    return isinstance(thinking, dict) and thinking.get("type") in {"enabled", "adaptive"}


def signature(thinking: str) -> str:
    """An opaque signature for a thinking block (clients pass it back, never read it)."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def input_tokens(body: JSON) -> int:
    return max(1, len(orjson.dumps([body.get("system"), body.get("messages")])) // 4)


def tool_use_id(message_id: str) -> str:
    return f"toolu_{message_id[-12:]}"


def message_usage(turn: Turn, tokens: int, directives: dict[str, str]) -> JSON:
    """Anthropic's usage fields (thinking counts as output, as there), priced in ticks."""
    output = len(turn.pieces) + (1 if turn.call else 0) + len(turn.reasoning)
    cached = min(tokens, number(directives, "cached"))
    cost = catalog.token_cost(tokens, output, cached=cached)
    return {
        "input_tokens": tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
        "cost_in_usd_ticks": number(directives, "cost", cost),
    }


def message(
    message_id: str, model: str, turn: Turn, tokens: int, directives: dict[str, str]
) -> JSON:
    content: list[JSON] = []
    if turn.reasoning:
        thought = "".join(turn.reasoning)
        content.append({"type": "thinking", "thinking": thought, "signature": signature(thought)})
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
        "usage": message_usage(turn, tokens, directives),
    }


def message_events(
    message_id: str, model: str, turn: Turn, tokens: int, directives: dict[str, str]
) -> list[bytes]:
    """Anthropic's named events: message_start, each block, message_delta, message_stop."""
    done = message(message_id, model, turn, tokens, directives)
    start = {**done, "content": [], "stop_reason": None}
    start["usage"] = {**done["usage"], "output_tokens": 0}
    start["usage"].pop("cost_in_usd_ticks")  # known once the answer is complete
    events = [named_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(done["content"]):
        events += block_events(index, block, turn)
    usage = {"output_tokens": done["usage"]["output_tokens"]}
    usage["cost_in_usd_ticks"] = done["usage"]["cost_in_usd_ticks"]
    events += [
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": done["stop_reason"], "stop_sequence": None},
                "usage": usage,
            },
        ),
        named_event("message_stop", {"type": "message_stop"}),
    ]
    return events


def block_events(index: int, block: JSON, turn: Turn) -> list[bytes]:
    """One content block as Anthropic streams it: start, its deltas, stop."""
    kind = block["type"]
    deltas: list[JSON]
    opened: JSON
    if kind == "thinking":
        opened = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in turn.reasoning]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        opened = {**block, "input": {}}
        arguments = orjson.dumps(block["input"]).decode()
        deltas = [{"type": "input_json_delta", "partial_json": arguments}]
    else:
        opened = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in turn.pieces]
    start = {"type": "content_block_start", "index": index, "content_block": opened}
    return [
        named_event("content_block_start", start),
        *(
            named_event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        ),
        named_event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


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
            events = message_events(message_id, model, turn, tokens, directives)
            # pace/cut/stall count from the first delta of the answer's last block.
            head = len(events) - 3 - len(turn.pieces or [0])
            return self.kit.answer(directives, lambda: self.kit.stream(events, directives, head))
        answer = message(message_id, model, turn, tokens, directives)
        return self.kit.answer(directives, lambda: ok(answer))

    def count_tokens(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(request, "messages")
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        return self.kit.answer(directives, lambda: ok({"input_tokens": input_tokens(body)}))

    def complete(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        """The legacy Anthropic `/v1/complete` (xAI does not stream it)."""
        parsed = self.kit.parse(request, "prompt")
        if isinstance(parsed, Reply):
            return parsed
        _, model, directives = parsed
        answer = {
            "type": "completion",
            "id": self.kit.next_id(),
            "completion": "".join(reply_pieces(number(directives, "chunks"))),
            "stop_reason": "end_turn",
            "model": model,
        }
        return self.kit.answer(directives, lambda: ok(answer))
