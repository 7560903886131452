"""Sharing one xAI account: members, their objects, usage, limits (docs/teams.md).

`team_from_settings` is the whole entry point for the app: None when the proxy is not
shared, so a single user's proxy never touches a database.
"""

from __future__ import annotations

from grok_proxy.config import Settings
from grok_proxy.teams.team import Team, TeamAuth, team_configured

__all__ = ["Team", "TeamAuth", "team_from_settings"]


def team_from_settings(settings: Settings) -> Team | None:
    """The team of this proxy, or None when it is not shared (no database is touched)."""
    return Team(settings) if team_configured(settings) else None
