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

from grok_proxy.calls.forwarder import Forwarder
from grok_proxy.calls.reply import Answer
from grok_proxy.routes.chat import BILLED_ANSWER
from grok_proxy.routes.shared import authorized, forward_as_is, forward_translated, validated_body
from grok_proxy.routes.table import Row
from grok_proxy.schemas.images import (
    UNSUPPORTED_IMAGE_FIELDS,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageGenerationsRequest,
)

log = logging.getLogger("grok_proxy.images")


async def generations(request: Request, row: Row, forwarder: Forwarder) -> Answer:
    """xAI's image generation, the body as sent."""
    caller = authorized(request, forwarder)
    raw, _ = await validated_body(request, forwarder, ImageGenerationsRequest)
    return await forward_translated(
        request,
        forwarder,
        "/images/generations",
        caller=caller,
        body=raw,
        on_json=partial(stamp_images, None),
    )


async def generate(request: Request, row: Row, forwarder: Forwarder) -> Answer:
    """Generate 1-10 images as URLs or base64 JPEG, defaults filled."""
    caller = authorized(request, forwarder)
    raw, _ = await validated_body(request, forwarder, ImageGenerationRequest)
    payload = orjson.loads(raw)
    dropped = [name for name in UNSUPPORTED_IMAGE_FIELDS if payload.pop(name, None) is not None]
    if dropped:
        log.debug("dropped image fields xAI does not support: %s", ", ".join(dropped))
    if not payload.get("model"):
        payload["model"] = forwarder.settings.calls.default_image_model
    return await forward_translated(
        request,
        forwarder,
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


ROWS = [
    Row("POST", "/images/generations", generations, schema=ImageGenerationsRequest, tag="images",
        summary="Generate images (xAI /v1/images/generations; OpenAI SDK images.generate)",
        description="Forwarded as sent; the answer gains `created` when xAI leaves it out."),
    Row("POST", "/images/edits", forward_as_is, BILLED_ANSWER, ImageEditRequest, tag="images",
        summary="Edit an image (xAI /v1/images/edits)",
        description="Forwarded as sent; the answer is read for the cost xAI states."),
    Row("POST", "/images/generate", generate, schema=ImageGenerationRequest, tag="images",
        summary="Generate images with defaults filled (the proxy's own convenience route)",
        description="`model` defaults to DEFAULT_IMAGE_MODEL; `quality`, `size` and `style` are "
        "dropped; the answer gains `created` and `model`."),
]  # fmt: skip
