"""Start-up checks that end the process with one clear line instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from grok_proxy.calls.upstream import upstream_of
from grok_proxy.config import Settings, get_settings


def settings_or_exit() -> Settings:
    """The settings, or exit with what is wrong, naming variables but never their values."""
    try:
        settings = get_settings()
        upstream_of(settings)  # the upstream target refuses a proxy that cannot work
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise SystemExit(f"grok-proxy: configuration error: {exc}") from None
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            message = error["msg"].removeprefix("Value error, ")
            names = ".".join(str(part).upper() for part in error["loc"])
            problems.append(f"{names}: {message}" if names else message)
        raise SystemExit("grok-proxy: configuration error: " + "; ".join(problems)) from None
    return settings
