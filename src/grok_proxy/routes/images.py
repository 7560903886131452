"""POST /images/generate and /images/generations: one endpoint under both names.

xAI does not support OpenAI's `quality`, `size` and `style`, so they are accepted and left
out of what goes upstream. The answer is xAI's plus `created` and `model`, as documented.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.routes.shared import (
    area_router,
    authorized,
    forward_translated,
    forwarder_of,
    request_body,
    validated_body,
)
from grok_proxy.schemas.images import UNSUPPORTED_IMAGE_FIELDS, ImageGenerationRequest

log = logging.getLogger("grok_proxy.images")

router = area_router("images")


@router.post(
    "/images/generations",
    summary="Generate images (xAI /v1/images/generations; OpenAI SDK images.generate)",
    openapi_extra=request_body(ImageGenerationRequest),
)
@router.post(
    "/images/generate",
    summary="Generate images (alias of /images/generations)",
    openapi_extra=request_body(ImageGenerationRequest),
)
async def generate_images(request: Request) -> Response:
    """Generate 1-10 images as URLs or base64 JPEG."""
    caller = authorized(request)
    raw, _ = await validated_body(request, ImageGenerationRequest)
    payload = orjson.loads(raw)
    dropped = [name for name in UNSUPPORTED_IMAGE_FIELDS if payload.pop(name, None) is not None]
    if dropped:
        log.debug("dropped image fields xAI does not support: %s", ", ".join(dropped))
    if not payload.get("model"):
        payload["model"] = forwarder_of(request).settings.default_image_model
    return await forward_translated(
        request,
        "/images/generations",
        caller=caller,
        body=orjson.dumps(payload),
        on_json=partial(stamp_images, payload["model"]),
    )


def stamp_images(model: str, body: bytes) -> bytes:
    """xAI's image answer plus `created` (when absent) and `model`."""
    answer = orjson.loads(body)
    if isinstance(answer, dict):
        answer.setdefault("created", int(time.time()))
        answer.setdefault("model", model)
    return orjson.dumps(answer)
