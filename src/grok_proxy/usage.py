"""Token usage out of xAI's answers: plain JSON bodies and the usage events of streams.

Three dialects: chat/completions (`prompt_tokens`, `completion_tokens`, details),
Anthropic messages (`input_tokens`, `output_tokens`, cache reads), and Responses
(`input_tokens`, `output_tokens`, details). All become one shape:
`{"prompt", "completion", "reasoning", "cached"}`.
"""

from __future__ import annotations

from typing import Any

Usage = dict[str, int]

# Only events containing this are parsed; everything else is relayed without a look.
USAGE_MARK = b'"usage"'


def normalize(usage: object) -> Usage | None:
    """One shape for the three dialects; None when there is no usage object."""
    if not isinstance(usage, dict):
        return None

    def number(*path: str) -> int:
        value: Any = usage
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, int) else 0

    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return {
            "prompt": number("prompt_tokens"),
            "completion": number("completion_tokens"),
            "reasoning": number("completion_tokens_details", "reasoning_tokens"),
            "cached": number("prompt_tokens_details", "cached_tokens"),
        }
    return {
        "prompt": number("input_tokens"),
        "completion": number("output_tokens"),
        "reasoning": number("output_tokens_details", "reasoning_tokens"),
        "cached": number("input_tokens_details", "cached_tokens")
        or number("cache_read_input_tokens"),
    }


def from_body(data: object) -> Usage | None:
    """Usage of a parsed plain JSON answer."""
    return normalize(data.get("usage")) if isinstance(data, dict) else None


def merge(known: Usage | None, found: Usage) -> Usage:
    """Anthropic streams report input tokens first and output tokens last: keep the larger."""
    if known is None:
        return found
    return {kind: max(known.get(kind, 0), count) for kind, count in found.items()}


def from_event(payload: Any) -> Usage | None:
    """Usage carried by one stream event of any of the three dialects."""
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
