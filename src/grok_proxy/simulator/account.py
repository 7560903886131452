"""Catalogue and account routes: models, language/embedding/image/video models, the API key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from grok_proxy.simulator import catalog
from grok_proxy.simulator.core import JSON, Kit, ok, parse_directives, xai_error
from grok_proxy.simulator.wire import Outcome, SimRequest


def api_key_info(key: str) -> JSON:
    return {
        "redacted_api_key": f"{key[:4]}...{key[-4:]}",
        "user_id": "sim-user",
        "name": "simulator key",
        "create_time": "2026-01-01T00:00:00Z",
        "modify_time": "2026-01-01T00:00:00Z",
        "modified_by": "sim-user",
        "team_id": "sim-team",
        "acls": ["api-key:model:*", "api-key:endpoint:*"],
        "api_key_id": "sim-key-1",
        "team_blocked": False,
        "api_key_blocked": False,
        "api_key_disabled": False,
    }


class Account:
    """GET /v1/models, /v1/{language,embedding,image-generation,video-generation}-models
    (each with `/{id}`), and /v1/api-key."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    def list_models(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        directives = parse_directives(parse_qs(request.query).get("sim", [""])[0])
        models = {"data": catalog.listing(), "object": "list"}
        return self.kit.answer(directives, lambda: ok(models))

    def retrieve_model(self, request: SimRequest, model_id: str) -> Outcome:
        for model in catalog.listing():
            if model["id"] == model_id:
                return ok(model)
        return xai_error(404, f"Model not found: {model_id}")

    def language_models(self, request: SimRequest) -> Outcome:
        models = [m for m in catalog.MODELS if m.kind == "language"]
        return ok({"models": [catalog.language_model(m) for m in models]})

    def language_model(self, request: SimRequest, model_id: str) -> Outcome:
        model = catalog.find(model_id)
        if model is None or model.kind != "language":
            return xai_error(404, f"Model not found: {model_id}")
        return ok(catalog.language_model(model))

    def embedding_models(self, request: SimRequest) -> Outcome:
        models = [catalog.embedding_model(m) for m in catalog.MODELS if m.kind == "embedding"]
        return ok({"models": models})

    def embedding_model(self, request: SimRequest, model_id: str) -> Outcome:
        return self._one("embedding", catalog.embedding_model, model_id)

    def image_models(self, request: SimRequest) -> Outcome:
        return self._media("image")

    def image_model(self, request: SimRequest, model_id: str) -> Outcome:
        return self._one("image", catalog.media_model, model_id)

    def video_models(self, request: SimRequest) -> Outcome:
        return self._media("video")

    def video_model(self, request: SimRequest, model_id: str) -> Outcome:
        return self._one("video", catalog.media_model, model_id)

    def _media(self, kind: str) -> Outcome:
        models = [catalog.media_model(m) for m in catalog.MODELS if m.kind == kind]
        return ok({"models": models})

    @staticmethod
    def _one(kind: str, describe: Callable[[catalog.Model], JSON], model_id: str) -> Outcome:
        """One model of a kind, by id or alias."""
        model = catalog.find(model_id)
        if model is None or model.kind != kind:
            return xai_error(404, f"Model not found: {model_id}")
        return ok(describe(model))

    def api_key(self, request: SimRequest) -> Outcome:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ") or request.headers.get("x-api-key", "")
        return ok(api_key_info(key))
