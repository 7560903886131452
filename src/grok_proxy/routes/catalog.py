"""Every REST route the proxy serves itself, as rows of one table (routes/table.py)."""

from __future__ import annotations

from grok_proxy.routes import anthropic, api, chat, images, vision
from grok_proxy.routes.table import RouteTable, Row

# The busiest first: documentation lists them in this order.
ROWS: list[Row] = [*chat.ROWS, *api.ROWS, *anthropic.ROWS, *images.ROWS, *vision.ROWS]


def route_table() -> RouteTable:
    """The rows, and the pass-through for every other path below the API prefix."""
    return RouteTable(ROWS, api.PASSTHROUGH)
