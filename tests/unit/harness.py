"""The app in-process, with respx standing in for the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import respx

from grok_proxy.app import create_app
from grok_proxy.config import Settings

UPSTREAM = "https://api.x.ai/v1"
KEY = "xai-unit-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}


@asynccontextmanager
async def proxied(router: respx.Router, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app, whose upstream is `router`."""
    # Retries are off unless a test asks for them: most tests look at a single exchange.
    settings = {"xai_max_retries": 0, **settings}
    app = create_app(
        Settings(xai_base_url=UPSTREAM, **settings), transport=httpx.MockTransport(router.handler)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            yield client


def upstream() -> respx.Router:
    return respx.Router(base_url=UPSTREAM, assert_all_called=False)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}], **fields}
