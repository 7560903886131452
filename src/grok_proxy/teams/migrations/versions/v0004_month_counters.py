"""This month's budget counters raised to this month's recorded usage.

Until this revision every usage flush on SQLite also deleted the month windows of the
counters (a case-blind LIKE meant for minute windows), so monthly budgets there counted
only what was taken since the last flush. The usage rows were always right.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op

from grok_proxy.teams.store import raise_month_counters_to_usage

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Raise the current month's counters where the usage says more was used."""
    raise_month_counters_to_usage(op.get_bind(), datetime.now(UTC))


def downgrade() -> None:
    """Nothing to undo: the counters only hold more of what was really used."""
