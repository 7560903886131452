"""Usage and cost out of xAI's answers: plain JSON bodies and the usage events of streams.

Three dialects: chat/completions (`prompt_tokens`, `completion_tokens`, details),
Anthropic messages (`input_tokens`, `output_tokens`, cache reads), and Responses
(`input_tokens`, `output_tokens`, details); images and videos report only a cost. All
become one shape, the token kinds kept apart (TOKEN_KINDS: `prompt`, `completion`,
`reasoning`, `cached`) plus what xAI bills besides tokens, when reported (EXTRA_KINDS):

- `cost_ticks`: xAI's own `cost_in_usd_ticks` (1 USD = 10,000,000,000 ticks; or
  `cost_in_nano_usd` x 10), which already includes server-side tools and sources. Present
  only when xAI stated it: the price table is then not used.
- `server_side_tools`, `sources`: `num_server_side_tools_used`, `num_sources_used`.

`completion` never includes reasoning: Responses (and some chat answers) count reasoning
inside the output tokens, chat's recorded answers do not; `total_tokens` tells which.
"""

from __future__ import annotations

from typing import Any

Usage = dict[str, int]

# Only events containing this are parsed; everything else is relayed without a look.
USAGE_MARK = b'"usage"'

TOKEN_KINDS = ("prompt", "completion", "reasoning", "cached")
EXTRA_KINDS = ("cost_ticks", "server_side_tools", "sources")
TICKS_PER_DOLLAR = 10_000_000_000
TICKS_PER_NANO = 10


def _number(data: Any, *path: str) -> int:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    # bool is an int in Python; a JSON `true` is not a count.
    return data if isinstance(data, int) and not isinstance(data, bool) else 0


def _present(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    return isinstance(value, int) and not isinstance(value, bool)


def normalize(usage: object) -> Usage | None:
    """One shape for every dialect; None when there is no usage object."""
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        prompt = _number(usage, "prompt_tokens")
        completion = _number(usage, "completion_tokens")
        reasoning = _number(usage, "completion_tokens_details", "reasoning_tokens")
        cached = _number(usage, "prompt_tokens_details", "cached_tokens")
    else:
        prompt = _number(usage, "input_tokens")
        completion = _number(usage, "output_tokens")
        reasoning = _number(usage, "output_tokens_details", "reasoning_tokens")
        cached = _number(usage, "input_tokens_details", "cached_tokens") or _number(
            usage, "cache_read_input_tokens"
        )
    total = usage.get("total_tokens")
    if reasoning and total == prompt + completion and completion >= reasoning:
        completion -= reasoning  # reasoning was counted inside the output tokens
    found: Usage = {
        "prompt": prompt,
        "completion": completion,
        "reasoning": reasoning,
        "cached": cached,
    }
    if _present(usage, "cost_in_usd_ticks"):
        found["cost_ticks"] = usage["cost_in_usd_ticks"]
    elif _present(usage, "cost_in_nano_usd"):
        found["cost_ticks"] = usage["cost_in_nano_usd"] * TICKS_PER_NANO
    if _present(usage, "num_server_side_tools_used"):
        found["server_side_tools"] = usage["num_server_side_tools_used"]
    if _present(usage, "num_sources_used"):
        found["sources"] = usage["num_sources_used"]
    return found


def from_body(data: object) -> Usage | None:
    """Usage of a parsed plain JSON answer (a completion, a response, an image)."""
    return normalize(data.get("usage")) if isinstance(data, dict) else None


def merge(known: Usage | None, found: Usage) -> Usage:
    """Usage events of one stream report running totals: keep the largest of each kind.

    Anthropic streams report input tokens first and output tokens last; xAI repeats the
    final usage on an extra chunk. Taking the maximum counts each token once either way.
    """
    if known is None:
        return found
    merged = dict(known)
    for kind, count in found.items():
        merged[kind] = max(merged.get(kind, 0), count)
    return merged


def from_event(payload: Any) -> Usage | None:
    """Usage carried by one stream event of any dialect (None when it carries none)."""
    if not isinstance(payload, dict):
        return None
    if "usage" in payload:
        return normalize(payload["usage"])
    for holder in ("message", "response"):  # Anthropic message_start, Responses completed
        inner = payload.get(holder)
        if isinstance(inner, dict) and "usage" in inner:
            return normalize(inner["usage"])
    return None


def is_usage_only_chunk(payload: Any) -> bool:
    """The chat chunk xAI adds for `include_usage`: no choices, just usage."""
    return isinstance(payload, dict) and payload.get("choices") == [] and "usage" in payload


def tokens(usage: Usage) -> int:
    """Tokens that count against a token budget: prompt, completion and reasoning."""
    return usage.get("prompt", 0) + usage.get("completion", 0) + usage.get("reasoning", 0)


def dollars(usage: Usage) -> float | None:
    """The cost xAI stated, in dollars; None when it did not state one."""
    ticks = usage.get("cost_ticks")
    return None if ticks is None else ticks / TICKS_PER_DOLLAR


def from_grpc(usage: Any) -> Usage:
    """xai-sdk's SamplingUsage message (gRPC) in the same shape."""
    found = normalize(
        {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_text_tokens},
            "num_sources_used": usage.num_sources_used,
            # One entry per server-side tool call.
            "num_server_side_tools_used": len(usage.server_side_tools_used),
        }
    )
    assert found is not None
    if usage.HasField("cost_in_usd_ticks"):
        found["cost_ticks"] = usage.cost_in_usd_ticks
    return found
