"""Start-up checks that end the process with one clear line instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from grok_proxy.calls.upstream import upstream_of
from grok_proxy.config import Settings, explain, get_settings


def settings_or_exit() -> Settings:
    """The settings, or exit with what is wrong, naming variables but never their values."""
    try:
        settings = get_settings()
        upstream_of(settings)  # the upstream target refuses a proxy that cannot work
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise SystemExit(f"grok-proxy: configuration error: {exc}") from None
        raise SystemExit(f"grok-proxy: configuration error: {explain(exc)}") from None
    return settings
