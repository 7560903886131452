"""POST /vision/analyze: one image and a prompt, translated into one chat completion."""

from __future__ import annotations

import base64
import binascii
import time
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request

from grok_proxy.calls.errors import ValidationFailed
from grok_proxy.calls.forwarder import Forwarder
from grok_proxy.calls.reply import Answer
from grok_proxy.routes.shared import authorized, forward_translated, validated_body
from grok_proxy.routes.table import Row
from grok_proxy.schemas.vision import VisionImage, VisionRequest

# xAI's documented limit for an image in a chat request.
MAX_IMAGE_BYTES = 20 * 1024 * 1024

MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


async def analyze(request: Request, row: Row, forwarder: Forwarder) -> Answer:
    """`{model, created, content, usage}` from a vision model's chat completion."""
    caller = authorized(request, forwarder)
    _, ask = await validated_body(request, forwarder, VisionRequest)
    model = ask.model or forwarder.settings.calls.default_vision_model
    chat: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": image_url(ask.image), "detail": ask.detail},
                    },
                    {"type": "text", "text": ask.prompt},
                ],
            }
        ],
    }
    if ask.temperature is not None:
        chat["temperature"] = ask.temperature
    if ask.max_tokens is not None:
        chat["max_tokens"] = ask.max_tokens
    return await forward_translated(
        request,
        forwarder,
        "/chat/completions",
        caller=caller,
        body=orjson.dumps(chat),
        on_json=partial(summarize, model),
    )


def image_url(image: VisionImage) -> str:
    """The URL to send: as given, or base64 bytes checked and wrapped as a data URL.

    An image that is not valid base64, not an image, or over 20 MiB is a 422 naming
    `image.b64_json`, like any other invalid field; nothing is sent upstream.
    """
    if image.url is not None:
        return image.url
    encoded = image.b64_json or ""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES + 3:
        raise too_big(len(encoded) * 3 // 4)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "image.b64_json is not valid base64.", param="image.b64_json"
        ) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise too_big(len(data))
    mime = sniff_image(data)
    if mime is None:
        raise ValidationFailed(
            "image.b64_json is not a PNG, JPEG, WebP or GIF image.", param="image.b64_json"
        )
    return f"data:{mime};base64,{encoded}"


def too_big(size: int) -> ValidationFailed:
    return ValidationFailed(
        f"image is {size / 1048576:.1f} MiB; xAI accepts images up to 20 MiB.",
        param="image.b64_json",
    )


def sniff_image(data: bytes) -> str | None:
    """The image's MIME type from its first bytes, or None when it is not an image we know."""
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def summarize(model: str, body: bytes) -> bytes:
    """The chat completion, reduced to the documented `{model, created, content, usage}`."""
    completion = orjson.loads(body)
    choices = completion.get("choices") or [{}]
    return orjson.dumps(
        {
            "model": completion.get("model", model),
            "created": completion.get("created", int(time.time())),
            "content": (choices[0].get("message") or {}).get("content"),
            "usage": completion.get("usage"),
        }
    )


ROWS = [
    Row("POST", "/vision/analyze", analyze, schema=VisionRequest, tag="vision",
        summary="Describe or answer a question about one image",
        description="`{model, created, content, usage}` from a vision model's chat completion."),
]  # fmt: skip
