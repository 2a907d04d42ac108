"""Decisions: a ``source`` column (which endpoint decided) and an index for time-ordered reads.

Rows written before this revision get ``source = 'unknown'``. The (created_at, decision_id) index
serves ``iter_decisions(since=...)`` and exports, which page through decisions in that order.

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


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("source", sa.String(32), nullable=False, server_default="unknown"))
    op.create_index("ix_decisions_created_at", "decisions", ["created_at", "decision_id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_created_at", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("source")
