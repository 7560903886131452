"""Images (generations and JSON edits) and videos (generations, edits, extensions, polling)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable

from grok_proxy.simulator import catalog
from grok_proxy.simulator.core import JSON, Kit, missing_field, number, ok, xai_error
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest

# The smallest valid JPEG: what b64_json images decode to.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQAB"
    "PxA="
)


def images(prompt: str, count: int, response_format: str, sequence: int) -> JSON:
    revised = f"A detailed rendering of: {prompt}"
    if response_format == "b64_json":
        encoded = base64.b64encode(TINY_JPEG).decode()
        data = [
            {"b64_json": encoded, "mime_type": "image/jpeg", "revised_prompt": revised}
            for _ in range(count)
        ]
    else:
        data = [
            {
                "url": f"https://imgen.x.ai/sim/{sequence}-{i}.jpg",
                "mime_type": "image/jpeg",
                "revised_prompt": revised,
            }
            for i in range(count)
        ]
    return {"data": data, "usage": {"cost_in_usd_ticks": count * catalog.IMAGE_TICKS}}


class Media:
    """POST /v1/images/generations|edits, POST /v1/videos/*, GET /v1/videos/{request_id}."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        # request_id -> [model, polls so far, duration]
        self.videos: dict[str, JSON] = {}

    def clear(self) -> None:
        self.videos.clear()

    def generate_images(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        return self._images(request, edit=False)

    def edit_images(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return xai_error(415, "Image edits take a JSON body (application/json).")
        return self._images(request, edit=True)

    def _images(self, request: SimRequest, edit: bool) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(
            request, model_required=False, default_model=catalog.DEFAULT_IMAGE_MODEL
        )
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        if not isinstance(body.get("prompt"), str):
            return missing_field("prompt")
        if edit and "image" not in body and "images" not in body:
            return missing_field("image")
        for unsupported in ("size", "quality", "style"):
            if unsupported in body:
                return xai_error(400, f"Argument not supported: {unsupported}")
        count = body.get("n") or 1
        if not isinstance(count, int) or not 1 <= count <= 10:
            return xai_error(400, "n must be between 1 and 10.")
        self.kit.sequence += 1
        answer = images(
            body["prompt"], count, body.get("response_format") or "url", self.kit.sequence
        )
        if "cost" in directives:
            answer["usage"]["cost_in_usd_ticks"] = number(directives, "cost")
        return self.kit.answer(directives, lambda: ok(answer))

    def start_video(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.kit.parse(
            request, model_required=False, default_model=catalog.DEFAULT_VIDEO_MODEL
        )
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        if not isinstance(body.get("prompt"), str):
            return missing_field("prompt")
        duration = body.get("duration") or 6
        if not isinstance(duration, int) or not 1 <= duration <= 15:
            return xai_error(400, "duration must be between 1 and 15 seconds.")
        request_id = self.kit.next_id()
        self.videos[request_id] = {
            "model": model,
            "polls": 0,
            "duration": duration,
            "cost": number(directives, "cost", duration * catalog.VIDEO_SECOND_TICKS),
        }
        return self.kit.answer(directives, lambda: ok({"request_id": request_id}))

    def video(self, request: SimRequest, request_id: str) -> Outcome:
        """202 on the first poll (still rendering), then 200 with `status: done`."""
        entry = self.videos.get(request_id)
        if entry is None:
            return xai_error(404, f"No video request {request_id}.")
        entry["polls"] += 1
        if entry["polls"] == 1:
            return ok({"request_id": request_id, "status": "pending", "progress": 50}, status=202)
        return ok(
            {
                "request_id": request_id,
                "status": "done",
                "progress": 100,
                "model": entry["model"],
                "usage": {"cost_in_usd_ticks": entry["cost"]},
                "video": {
                    "url": f"https://vidgen.x.ai/sim/{request_id}.mp4",
                    "duration": entry["duration"],
                    "respect_moderation": True,
                },
            }
        )
