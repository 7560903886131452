"""Every setting is documented where users look for it, and read the way the docs say."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from grok_proxy.config import Settings

ROOT = Path(__file__).parents[2]
NAMES = [name.upper() for name in Settings.model_fields]


@pytest.mark.parametrize("document", ["docs/configuration.md", ".env.example"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [name for name in NAMES if name not in text]
    assert not missing, f"{document} does not mention {missing}"


def test_env_example_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings == Settings(_env_file=None)


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
