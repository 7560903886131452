"""GET /health: the proxy is up. It never calls upstream, so it is cheap to probe."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy import __version__
from grok_proxy.routes.shared import LeanRoute
from grok_proxy.serving.access import API_PREFIX

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
    (503 when it does not); no key is sent or shown, and the answer is reused for
    PROBE_CACHE_SECONDS.
    """
    if request.app.state.drain.draining:
        return Response(_DRAINING, status_code=503, media_type="application/json")
    if request.query_params.get("upstream") not in {"1", "true", "yes"}:
        return Response(_HEALTHY, media_type="application/json")
    report = await _probe(request)
    body: dict[str, object] = {
        "status": "healthy" if report["reachable"] else "upstream unreachable",
        "version": __version__,
    }
    body["upstream"] = report
    return Response(
        orjson.dumps(body),
        status_code=200 if report["reachable"] else 503,
        media_type="application/json",
    )


# Callers cannot make the proxy call upstream more often than this, however often they ask.
PROBE_CACHE_SECONDS = 10.0


class _ProbeCache:
    """The last probe's report, and a lock so that concurrent askers share one probe."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.report: dict[str, object] | None = None
        self.at = 0.0


async def _probe(request: Request) -> dict[str, object]:
    """The upstream's reachability, probed at most every PROBE_CACHE_SECONDS per worker."""
    state = request.app.state
    cache: _ProbeCache | None = getattr(state, "probe_cache", None)
    if cache is None:
        cache = state.probe_cache = _ProbeCache()
    async with cache.lock:
        age = time.monotonic() - cache.at
        if cache.report is None or age >= PROBE_CACHE_SECONDS:
            cache.report = _without_ids(await state.forwarder.probe())
            cache.at, age = time.monotonic(), 0.0
        return {**cache.report, "checked_seconds_ago": round(age, 1)}


def _without_ids(report: dict[str, object]) -> dict[str, object]:
    """Only the scheme, host and port of the base URL: its path may carry account ids."""
    base_url = report.get("base_url")
    if isinstance(base_url, str):
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        report = {**report, "base_url": f"{parts.scheme}://{host}{port}"}
    return report
