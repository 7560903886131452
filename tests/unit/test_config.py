"""Settings: read from the same flat variables as always, into groups; documented from one source."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from grok_proxy.config import Settings, explain
from grok_proxy.config.reference import env_example, with_tables
from grok_proxy.config.settings import variables

ROOT = Path(__file__).parents[2]

# Deployments set these names: renaming one breaks them silently, so the list is written out.
VARIABLES = [
    "HOST",
    "PORT",
    "WORKERS",
    "GROK_PROXY_GRPC_PORT",
    "SHUTDOWN_GRACE_SECONDS",
    "FORWARDED_ALLOW_IPS",
    "CORS_ALLOW_ORIGINS",
    "XAI_UPSTREAM",
    "XAI_BASE_URL",
    "XAI_REGION",
    "XAI_MODEL_ALIASES",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_GATEWAY_ID",
    "CLOUDFLARE_AIG_TOKEN",
    "XAI_CONNECT_TIMEOUT",
    "XAI_READ_TIMEOUT",
    "XAI_WRITE_TIMEOUT",
    "XAI_TOTAL_TIMEOUT",
    "XAI_POOL_SIZE",
    "XAI_PROXY_URL",
    "XAI_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "XAI_GRPC_URL",
    "XAI_MAX_RETRIES",
    "XAI_RETRY_BACKOFF",
    "XAI_RETRY_MAX_WAIT",
    "XAI_RETRY_DEADLINE",
    "SSE_KEEPALIVE_SECONDS",
    "CAPTURE_STREAM_USAGE",
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_VISION_MODEL",
    "MAX_CONNECTIONS",
    "MAX_HEADER_BYTES",
    "HEADERS_TIMEOUT",
    "BODY_TIMEOUT",
    "BODY_MIN_RATE",
    "MAX_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_SSE_EVENT_BYTES",
    "WS_MAX_MESSAGE_BYTES",
    "GROK_PROXY_API_KEYS",
    "XAI_API_KEY",
    "GROK_PROXY_OPS_TOKEN",
    "GROK_PROXY_DATA_DIR",
    "DATABASE_URL",
    "GROK_PROXY_ADMIN_TOKEN",
    "MODEL_PRICES",
    "TEAM_CLIENT_SECRETS",
    "TEAM_REFRESH_SECONDS",
    "LOG_LEVEL",
    "LOG_FORMAT",
]


def test_the_variables_users_set_are_unchanged() -> None:
    assert sorted(variables()) == sorted(VARIABLES)


def test_env_example_is_what_the_settings_say() -> None:
    # On failure: uv run python tools/settings_docs.py
    assert (ROOT / ".env.example").read_text(encoding="utf-8") == env_example()


def test_the_docs_tables_are_what_the_settings_say() -> None:
    # On failure: uv run python tools/settings_docs.py
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text == with_tables(text)
    for variable in VARIABLES:
        assert f"| `{variable}` |" in text


def test_a_docs_page_without_a_groups_table_is_refused() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    without_logs = text.replace("<!-- settings:logs", "<!-- dropped:logs")
    with pytest.raises(ValueError, match="one for each"):
        with_tables(without_logs)


def test_env_example_is_a_valid_configuration() -> None:
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings == Settings(_env_file=None)


def test_flat_variables_land_in_their_groups(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XAI_READ_TIMEOUT", "7.5")
    monkeypatch.setenv("cors_allow_origins", "https://a.example, http://localhost:3000")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "XAI_READ_TIMEOUT=1\nXAI_MODEL_ALIASES=grok=x-ai/grok-4, fast=x-ai/grok-4-fast\n"
        "MODEL_PRICES=grok-4=3/0.75/15\nNOT_A_SETTING=x\n"
    )
    settings = Settings(_env_file=dotenv, log_format="json")
    assert settings.upstream.read_timeout == 7.5  # the environment wins over .env
    assert settings.serving.cors_allow_origins == ["https://a.example", "http://localhost:3000"]
    assert settings.logs.level == "debug"
    assert settings.logs.format == "json"  # a keyword wins over both
    assert settings.upstream.model_aliases == {"grok": "x-ai/grok-4", "fast": "x-ai/grok-4-fast"}
    assert settings.teams.model_prices == {"grok-4": (3.0, 0.75, 15.0)}


def test_errors_name_the_variable_and_never_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, xai_read_timeout="soon-secret", database_url="")
    assert explain(caught.value).startswith("XAI_READ_TIMEOUT: Input should be a valid number")
    assert "soon-secret" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, xai_upstream="cloudflare")
    assert explain(caught.value) == (
        "XAI_UPSTREAM=cloudflare needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_GATEWAY_ID"
    )


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.upstream.read_timeout = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.upstream = settings.upstream  # type: ignore[misc]


def test_a_misspelt_keyword_is_refused() -> None:
    with pytest.raises(TypeError, match="xai_base_ur"):
        Settings(xai_base_ur="http://127.0.0.1:9/v1")


def test_access_keys_are_kept_out_of_the_repr() -> None:
    settings = Settings(grok_proxy_api_keys="key-tail-1", xai_api_key="xai-tail-2")
    assert settings.access.api_keys == ("key-tail-1",)
    assert "tail" not in repr(settings)


def test_access_keys_need_the_server_key() -> None:
    with pytest.raises(ValidationError, match="XAI_API_KEY must be set"):
        Settings(grok_proxy_api_keys="team-key")


def test_access_keys_from_a_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nalpha\n\n beta \n")
    settings = Settings(grok_proxy_api_keys=f"@{keys}", xai_api_key="xai-server")
    assert settings.access.api_keys == ("alpha", "beta")


def test_base_url_trailing_slash_is_dropped() -> None:
    assert (
        Settings(xai_base_url="http://127.0.0.1:9100/v1/").upstream.base_url
        == "http://127.0.0.1:9100/v1"
    )
