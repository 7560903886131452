"""GET /health: the proxy is up. It never calls upstream, so it is cheap to probe."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from grok_proxy import __version__

router = APIRouter(tags=["health"])

_HEALTHY = b'{"status":"healthy","version":"' + __version__.encode() + b'"}'


@router.get(
    "/health",
    summary="Liveness of the proxy",
    responses={200: {"content": {"application/json": {"example": {"status": "healthy"}}}}},
)
async def health() -> Response:
    """`{"status": "healthy", "version": ...}` without touching the upstream."""
    return Response(_HEALTHY, media_type="application/json")
