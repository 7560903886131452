"""How the simulator decides to call a tool, and what it says once it has the tool's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from grok_proxy.simulator.instances import instance

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call the simulated model makes."""

    name: str
    arguments: JSON

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass(frozen=True, slots=True)
class Offered:
    """A tool the request offers the model: its name and the JSON schema of its input."""

    name: str
    schema: JSON


def choose(offered: list[Offered], choice: Any, forced_name: str | None) -> Call | None:
    """The call to make: none when no tool or `none`, the forced one, else the first offered."""
    if not offered or choice == "none":
        return None
    tool = next((t for t in offered if t.name == forced_name), None) if forced_name else None
    tool = tool or offered[0]
    return Call(tool.name, arguments(tool.schema))


def arguments(schema: JSON) -> JSON:
    """Arguments that validate against the tool's parameters schema (an object)."""
    value = instance(schema or {"type": "object", "properties": {}})
    return value if isinstance(value, dict) else {"value": value}


def result_answer(result: Any) -> str:
    """The text answer after a tool ran: it mentions the result, as a model would."""
    text = result if isinstance(result, str) else orjson.dumps(result).decode()
    return f"The tool returned: {text}"


def text_of(content: Any) -> str:
    """The text inside a content field: a string, or the text of its parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                inner = part.get("text", part.get("content", part.get("output", "")))
                parts.append(text_of(inner))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    if content is None:
        return ""
    return orjson.dumps(content).decode()


# Server-side tools xAI runs itself, and the `server_side_tool_usage_details` field each counts in.
SERVER_SIDE = {
    "web_search": "web_search_calls",
    "x_search": "x_search_calls",
    "code_interpreter": "code_interpreter_calls",
    "code_execution": "code_interpreter_calls",
    "file_search": "file_search_calls",
    "collections_search": "document_search_calls",
    "mcp": "mcp_calls",
}


def server_side_offered(body: JSON) -> list[str]:
    """The server-side tools a Responses request offers: the model uses each once."""
    return [
        tool["type"]
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and tool.get("type") in SERVER_SIDE
    ]


def server_side_details(used: list[str]) -> JSON:
    """xAI's `server_side_tool_usage_details`: calls per kind, every kind present."""
    details = dict.fromkeys(sorted(set(SERVER_SIDE.values())), 0)
    for kind in used:
        details[SERVER_SIDE[kind]] += 1
    return details


# Chat Completions: tools=[{"type": "function", "function": {...}}]


def chat_offered(body: JSON) -> list[Offered]:
    offered = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered.append(Offered(function["name"], function.get("parameters") or {}))
    return offered


def chat_forced(choice: Any) -> str | None:
    if isinstance(choice, dict):
        function = choice.get("function") or {}
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) else None
    return None


def chat_tool_result(body: JSON) -> str | None:
    """The tool's result when the conversation ends with `tool` messages."""
    messages = body.get("messages") or []
    results: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        results.insert(0, text_of(message.get("content")))
    return "; ".join(results) if results else None


# Responses: tools=[{"type": "function", "name": ..., "parameters": ...}]


def responses_offered(body: JSON) -> list[Offered]:
    return [
        Offered(tool["name"], tool.get("parameters") or {})
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("name"), str)
    ]


def responses_forced(choice: Any) -> str | None:
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    return None


def responses_tool_result(body: JSON) -> str | None:
    """The output of trailing `function_call_output` input items."""
    items = body.get("input")
    if not isinstance(items, list):
        return None
    results: list[str] = []
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            break
        results.insert(0, text_of(item.get("output")))
    return "; ".join(results) if results else None


# Anthropic Messages: tools=[{"name", "input_schema"}] and server tools (no input_schema)


def anthropic_offered(body: JSON) -> list[Offered]:
    """Client tools only: server tools (`web_search_20250305`...) run at the provider."""
    return [
        Offered(tool["name"], tool.get("input_schema") or {})
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and "input_schema" in tool
        and tool.get("type") in (None, "custom")
    ]


def anthropic_choice(choice: Any) -> tuple[Any, str | None]:
    """(`none` or something else, the forced tool's name)."""
    if not isinstance(choice, dict):
        return "auto", None
    kind = choice.get("type")
    name = choice.get("name") if kind == "tool" else None
    return kind, name if isinstance(name, str) else None


def anthropic_tool_result(body: JSON) -> str | None:
    """The content of `tool_result` blocks in the last user message."""
    messages = body.get("messages") or []
    if not messages or not isinstance(messages[-1], dict):
        return None
    content = messages[-1].get("content")
    if messages[-1].get("role") != "user" or not isinstance(content, list):
        return None
    results = [
        text_of(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return "; ".join(results) if results else None
