"""POST /images/generations (xAI's route, as sent) and /images/generate (the seed's own).

/images/generations mirrors xAI: the body reaches xAI exactly as sent. /images/generate is
the seed's convenience route: `model` defaults to DEFAULT_IMAGE_MODEL, and OpenAI's
`quality`, `size` and `style` (which xAI does not support) are left out. Both answers are
xAI's plus `created` when absent (the OpenAI SDK reads it), and /images/generate's `model`.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import Response

from grok_proxy.routes.chat import BILLED_ANSWER
from grok_proxy.routes.shared import (
    area_router,
    authorized,
    forward_as_is,
    forward_translated,
    forwarder_of,
    request_body,
    validated_body,
)
from grok_proxy.schemas.images import (
    UNSUPPORTED_IMAGE_FIELDS,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageGenerationsRequest,
)

log = logging.getLogger("grok_proxy.images")

router = area_router("images")


@router.post(
    "/images/generations",
    summary="Generate images (xAI /v1/images/generations; OpenAI SDK images.generate)",
    description="Forwarded as sent; the answer gains `created` when xAI leaves it out.",
    openapi_extra=request_body(ImageGenerationsRequest),
)
async def generations(request: Request) -> Response:
    """xAI's image generation, the body as sent."""
    caller = authorized(request)
    raw, _ = await validated_body(request, ImageGenerationsRequest)
    return await forward_translated(
        request, "/images/generations", caller=caller, body=raw, on_json=partial(stamp_images, None)
    )


@router.post(
    "/images/edits",
    summary="Edit an image (xAI /v1/images/edits)",
    description="Forwarded as sent; the answer is read for the cost xAI states.",
    openapi_extra=request_body(ImageEditRequest),
)
async def edits(request: Request) -> Response:
    """xAI's image edit, the body as sent."""
    return await forward_as_is(request, BILLED_ANSWER)


@router.post(
    "/images/generate",
    summary="Generate images with defaults filled (the proxy's own convenience route)",
    description=(
        "`model` defaults to DEFAULT_IMAGE_MODEL; `quality`, `size` and `style` are dropped; "
        "the answer gains `created` and `model`."
    ),
    openapi_extra=request_body(ImageGenerationRequest),
)
async def generate(request: Request) -> Response:
    """Generate 1-10 images as URLs or base64 JPEG, defaults filled."""
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


def stamp_images(model: str | None, body: bytes) -> bytes:
    """xAI's image answer plus `created` (when absent) and `model` (when known and absent)."""
    answer = orjson.loads(body)
    if isinstance(answer, dict):
        answer.setdefault("created", int(time.time()))
        if model is not None:
            answer.setdefault("model", model)
    return orjson.dumps(answer)
