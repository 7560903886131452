"""Keys settings: comments never become keys, and a setting without keys refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from grok_proxy.config import Settings

SERVER_KEY = "xai-server-secret-0b8d4e6f13"


def test_comments_never_split_into_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# old keys: retired-1, retired-2\nalpha, beta # the new pair\n#gamma\n")
    settings = Settings(grok_proxy_api_keys=f"@{keys}", xai_api_key=SERVER_KEY)
    assert settings.access.api_keys == ("alpha", "beta")


@pytest.mark.parametrize("content", ["# a, b\n", "\n  \n# only comments\n", ""])
def test_a_keys_file_without_keys_refuses_to_start(tmp_path: Path, content: str) -> None:
    keys = tmp_path / "keys"
    keys.write_text(content)
    with pytest.raises(ValidationError, match="holds no key"):
        Settings(grok_proxy_api_keys=f"@{keys}", xai_api_key=SERVER_KEY)


def test_a_keys_list_of_only_commas_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="holds no key"):
        Settings(grok_proxy_api_keys=" , ,", xai_api_key=SERVER_KEY)


def test_a_missing_keys_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(grok_proxy_api_keys=f"@{tmp_path / 'nope'}", xai_api_key=SERVER_KEY)


def test_configuration_errors_do_not_show_the_values_read() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(grok_proxy_api_keys="team-key-secret-tail")
    assert "team-key-secret-tail" not in str(caught.value)
