"""GET /health: the proxy is up. It never calls upstream, so it is cheap to probe."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy import __version__
from grok_proxy.middleware import API_PREFIX
from grok_proxy.routes.shared import LeanRoute

router = APIRouter(tags=["health"], route_class=LeanRoute)

_HEALTHY = b'{"status":"healthy","version":"' + __version__.encode() + b'"}'
_DRAINING = b'{"status":"draining","version":"' + __version__.encode() + b'"}'


@router.get(f"{API_PREFIX}/health", include_in_schema=False)
@router.get(
    "/health",
    summary="Liveness of the proxy",
    responses={200: {"content": {"application/json": {"example": {"status": "healthy"}}}}},
)
async def health(request: Request) -> Response:
    """`{"status": "healthy", "version": ...}` without touching the upstream; 503 while draining.

    With `?upstream=1` it also says which upstream is configured and whether it answers
    (503 when it does not); no key is sent or shown.
    """
    forwarder = request.app.state.forwarder
    if forwarder.drain.draining:
        return Response(_DRAINING, status_code=503, media_type="application/json")
    if request.query_params.get("upstream") not in {"1", "true", "yes"}:
        return Response(_HEALTHY, media_type="application/json")
    report = await forwarder.probe()
    body = {
        "status": "healthy" if report["reachable"] else "upstream unreachable",
        "version": __version__,
    }
    body["upstream"] = report
    return Response(
        orjson.dumps(body),
        status_code=200 if report["reachable"] else 503,
        media_type="application/json",
    )
