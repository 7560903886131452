"""GET /metrics: Prometheus exposition, summed over every worker."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.observability import metrics
from grok_proxy.routes.shared import LeanRoute

router = APIRouter(tags=["operations"], route_class=LeanRoute)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(request: Request) -> Response:
    """Requests, latency, upstream errors, retries, open streams and tokens by model."""
    # Rendering takes time in proportion to the series: off the event loop, requests go on.
    body, content_type = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=content_type)
