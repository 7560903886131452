"""Usage rows count server-side tool uses and Live Search sources, as xAI reports them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("server_side_tools", "sources")


def upgrade() -> None:
    """Add the two counts, zero for the rows already there."""
    with op.batch_alter_table("usage") as table:
        for name in COLUMNS:
            table.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("usage") as table:
        for name in COLUMNS:
            table.drop_column(name)
