"""Sharing one xAI account: members, their objects, usage, limits (docs/teams.md).

`team_from_settings` is the whole entry point for the app: None when the proxy is not
shared, so a single user's proxy never imports a database driver or touches a file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from grok_proxy.config import Settings

if TYPE_CHECKING:
    from grok_proxy.teams.team import Team

__all__ = ["team_configured", "team_from_settings"]


def team_from_settings(settings: Settings) -> Team | None:
    """The team of this proxy, or None when it is not shared (no database is touched)."""
    if not team_configured(settings):
        return None
    from grok_proxy.teams.team import Team

    return Team(settings)


def team_configured(settings: Settings) -> bool:
    """Whether this proxy is shared: access keys set, a database named, or members added."""
    if settings.access.api_keys or settings.teams.database_url:
        return True
    return _has_members(Path(settings.teams.data_dir) / "teams.db")


def _has_members(path: Path) -> bool:
    """Whether the SQLite team database exists and holds a member (read-only, never created).

    A database left by GROK_PROXY_API_KEYS alone (no members) does not make the proxy shared
    once those keys are removed again.
    """
    if not path.exists():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            return bool(db.execute("SELECT 1 FROM members LIMIT 1").fetchone())
    except sqlite3.Error:
        return False
