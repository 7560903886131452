"""Secrets never come back to callers inside relayed upstream errors."""

from __future__ import annotations

import orjson

from grok_proxy.calls.errors import upstream_error
from grok_proxy.calls.redact import REDACTED, redact, remember_secrets, server_secrets
from grok_proxy.config import Settings

SERVER_KEY = "xai-server-secret-0b8d4e6f13"
CALLER_KEY = "xai-caller-secret-7f3a9c2e51"
OTHER_KEY = "sk-proj-someone-elses-key-123456"


def test_server_key_and_foreign_keys_are_redacted_but_the_callers_own_stays() -> None:
    text = f"bad key {SERVER_KEY}; also {OTHER_KEY}; you sent {CALLER_KEY}."
    clean = redact(text, CALLER_KEY, secrets=(SERVER_KEY,))
    assert SERVER_KEY not in clean
    assert OTHER_KEY not in clean
    assert CALLER_KEY in clean
    assert clean.count(REDACTED) == 2


def test_the_server_key_is_redacted_even_when_it_is_the_key_sent_upstream() -> None:
    # With access keys, the key sent upstream is the server's: passing it must not keep it.
    assert SERVER_KEY not in redact(f"key {SERVER_KEY}", SERVER_KEY, secrets=(SERVER_KEY,))


def test_ordinary_words_survive() -> None:
    text = "Use sk-learn or xai-sdk; model grok-4 is not available for task-xyz."
    assert redact(text, None, secrets=()) == text


def test_upstream_error_messages_are_redacted() -> None:
    settings = Settings(
        grok_proxy_api_keys="team-key-number-1",
        xai_api_key=SERVER_KEY,
        cloudflare_aig_token="cf-tok-abcdef",
    )
    assert set(server_secrets(settings)) == {SERVER_KEY, "cf-tok-abcdef", "team-key-number-1"}
    remember_secrets(settings)
    try:
        body = orjson.dumps({"error": {"message": f"Incorrect key {SERVER_KEY} via cf-tok-abcdef"}})
        error = upstream_error(401, body, "application/json")
        assert SERVER_KEY not in error.message
        assert "cf-tok-abcdef" not in error.message
        assert error.message.startswith("Incorrect key [redacted]")
    finally:
        remember_secrets(Settings())
