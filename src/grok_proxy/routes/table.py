"""The route table: one row per REST route, read by the dispatcher, OpenAPI and the relays.

A row says everything the proxy needs to know about a route: its path and method, the
schema its body is validated with (if any), where it goes upstream, which SDK's error
envelope it answers in, how its stream ends, whether its answer is read, and the handler
that turns a request into a call. Adding a REST route is a schema and a row
(docs/architecture.md shows one).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from grok_proxy.calls.errors import Flavor
from grok_proxy.calls.route import CHAT, PASS_THROUGH, Route
from grok_proxy.serving.paths import API_PREFIX

if TYPE_CHECKING:
    from starlette.requests import Request

    from grok_proxy.calls.forwarder import Forwarder
    from grok_proxy.calls.reply import Answer

__all__ = [
    "API_PREFIX",
    "PASSTHROUGH_METHODS",
    "Handler",
    "RouteTable",
    "Row",
    "documented_body",
    "passthrough_row",
]

# The methods the pass-through forwards (others get FastAPI's 405).
PASSTHROUGH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Turns one request of a row into its answer (an ASGI callable).
Handler = Callable[["Request", "Row", "Forwarder"], Awaitable["Answer"]]


@dataclass(frozen=True, slots=True)
class Row:
    """One REST route below API_PREFIX."""

    method: str
    # FastAPI's template syntax: `/models/{model_id}`, `/{path:path}`.
    path: str
    handler: Handler
    # Flavor of errors, how a stream ends, whether a JSON answer is read.
    route: Route = CHAT
    # The JSON body is validated with it (and documented by it in OpenAPI).
    schema: type[BaseModel] | None = None
    # The path at xAI, when it is not `path`.
    upstream: str | None = None
    summary: str = ""
    description: str = ""
    tag: str | None = None
    # The full path template: what access lines and metrics name the route by.
    template: str = field(init=False)
    # The upstream path of a row with no parameters.
    target: str = field(init=False)

    def __post_init__(self) -> None:
        # Made once: the entry reads them on every request.
        object.__setattr__(self, "template", API_PREFIX + self.path)
        object.__setattr__(self, "target", self.upstream or self.path)


class RouteTable:
    """Finds the row of a request: exact paths by one dict lookup, templates in order."""

    def __init__(self, rows: Iterable[Row], fallback: Row) -> None:
        self.rows = list(rows)
        # The pass-through: every other path below the prefix, for the methods it takes.
        self.fallback = fallback
        self.fallback_methods = frozenset(PASSTHROUGH_METHODS)
        self.exact: dict[tuple[str, str], Row] = {}
        self.templated: list[tuple[str, re.Pattern[str], Row]] = []
        for row in self.rows:
            if "{" in row.path:
                self.templated.append((row.method, _pattern(row.template), row))
            else:
                self.exact.setdefault((row.method, row.template), row)
        # Paths below the prefix that the app serves itself (health): never forwarded.
        self.reserved: set[str] = set()

    def flavor(self, path: str, row: Row | None) -> Flavor:
        """The envelope of a request's errors: its row's, else Anthropic's below /messages
        (the pass-through and the app's own routes)."""
        if row is not None and row is not self.fallback:
            return row.route.flavor
        anthropic = path.endswith("/messages") or "/messages/" in path
        return Flavor.ANTHROPIC if anthropic else Flavor.OPENAI

    def match(self, method: str, path: str) -> Row | None:
        """The row for `method` on `path` (already below API_PREFIX), or None."""
        row = self.exact.get((method, path))
        if row is not None:
            return row
        for row_method, pattern, row in self.templated:
            if row_method == method and pattern.fullmatch(path):
                return row
        if (
            method in self.fallback_methods
            and path.startswith(API_PREFIX + "/")
            and path not in self.reserved
        ):
            return self.fallback
        return None


def _pattern(template: str) -> re.Pattern[str]:
    """A template's regular expression: `{name}` is one segment, `{name:path}` the rest."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = ""
    for part in parts:
        if part.startswith("{"):
            regex += ".+" if part.endswith(":path}") else "[^/]+"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def documented_body(schema: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents a JSON body the route validates itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}
            },
        }
    }


def passthrough_row(handler: Handler) -> Row:
    """The row of every path no other row names: forwarded verbatim."""
    return Row("*", "/{path:path}", handler, PASS_THROUGH)
