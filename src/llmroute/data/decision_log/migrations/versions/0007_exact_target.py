"""Decisions: the quality target exact, ``target_value`` (float) and ``target_kind`` (relative | absolute).

The ``target`` text column rounds a relative target to a whole percent (95.5% is "96% of the best
model"); readers take the exact pair when it is there and fall back to parsing the text. Rows written
before this revision have both NULL (their text is parsed as before); nothing is rewritten.

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("target_value", sa.Float, nullable=True))
        batch.add_column(sa.Column("target_kind", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("target_kind")
        batch.drop_column("target_value")
