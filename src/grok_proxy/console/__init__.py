"""The team console: a web page at /console for the holder of GROK_PROXY_ADMIN_TOKEN.

Mounted only on a shared proxy with an admin token (elsewhere /console is a 404). Every
change goes through the /admin API (routes.py bridges the session to it); the page reads
usage, budgets and failures through the read-only queries in reports.py.
"""

from __future__ import annotations

from grok_proxy.console.routes import console_routes

__all__ = ["console_routes"]
