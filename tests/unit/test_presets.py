"""Model names between the caller's form and an access point's, and preset settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from grok_proxy.calls.presets import PRESETS, ModelNames
from grok_proxy.config import Settings, parse_aliases

OPENROUTER = ModelNames("x-ai/", parse_aliases("fast=x-ai/grok-4-fast-reasoning"))


def test_request_model_goes_out_in_the_upstreams_form() -> None:
    assert OPENROUTER.request_body(b'{"model":"grok-4","x":1}') == b'{"model":"x-ai/grok-4","x":1}'
    assert OPENROUTER.request_body(b'{"model":"fast"}') == b'{"model":"x-ai/grok-4-fast-reasoning"}'
    # Already in the upstream's form, or nothing to map: the caller's bytes, untouched.
    body = b'{ "model" : "x-ai/grok-3" }'
    assert OPENROUTER.request_body(body) is body
    assert OPENROUTER.request_body(b'{"prompt":"hi"}') == b'{"prompt":"hi"}'


def test_answers_come_back_in_the_callers_form() -> None:
    chunk = b'data: {"id":"1","model":"x-ai/grok-4","choices":[]}\n\n'
    assert OPENROUTER.answer(chunk) == b'data: {"id":"1","model":"grok-4","choices":[]}\n\n'
    assert OPENROUTER.answer(b'{"model": "x-ai/grok-4-fast-reasoning"}') == b'{"model": "fast"}'
    listing = b'{"data":[{"id":"x-ai/grok-3"},{"id":"openai/gpt-9"}]}'
    assert OPENROUTER.answer(listing) == b'{"data":[{"id":"grok-3"},{"id":"openai/gpt-9"}]}'
    # Text that merely mentions a model is not a model field: left alone.
    text = b'{"content":"I am x-ai/grok-4"}'
    assert OPENROUTER.answer(text) == text


def test_identity_for_xai() -> None:
    names = ModelNames("", {})
    assert names.identity
    body = b'{"model":"grok-4"}'
    assert names.request_body(body) is body


def test_preset_routes() -> None:
    assert PRESETS["openrouter"].serves("/chat/completions")
    assert not PRESETS["openrouter"].serves("/tokenize-text")
    assert PRESETS["openrouter"].serves("/models/x-ai/grok-4")
    assert PRESETS["xai"].serves("/anything/new")


@pytest.mark.parametrize(
    ("settings", "base"),
    [
        ({}, "https://api.x.ai/v1"),
        ({"xai_region": "eu-west-1"}, "https://eu-west-1.api.x.ai/v1"),
        ({"xai_upstream": "openrouter"}, "https://openrouter.ai/api/v1"),
        ({"xai_upstream": "cometapi"}, "https://api.cometapi.com/v1"),
        (
            {
                "xai_upstream": "cloudflare",
                "cloudflare_account_id": "a1",
                "cloudflare_gateway_id": "g1",
            },
            "https://gateway.ai.cloudflare.com/v1/a1/g1/grok/v1",
        ),
        (
            {"xai_upstream": "openrouter", "xai_base_url": "http://127.0.0.1:9/api/v1/"},
            "http://127.0.0.1:9/api/v1",
        ),
    ],
)
def test_base_urls(settings: dict[str, str], base: str) -> None:
    assert Settings(**settings).upstream.effective_base_url == base  # type: ignore[arg-type]


def test_cloudflare_needs_its_ids() -> None:
    with pytest.raises(ValidationError, match="CLOUDFLARE_ACCOUNT_ID"):
        Settings(xai_upstream="cloudflare")
