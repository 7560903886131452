"""Usage per minute and members' last failures, for the console.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

USAGE_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_nanos",
    "server_side_tools",
    "sources",
)


def upgrade() -> None:
    """Create usage_minutes and failures."""
    op.create_table(
        "usage_minutes",
        sa.Column("member_id", sa.String(40), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in USAGE_COLUMNS),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.String(40), nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("model", sa.String(200)),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("failures")
    op.drop_table("usage_minutes")
