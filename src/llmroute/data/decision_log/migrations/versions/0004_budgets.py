"""Budgets and the spend ledger: budget definitions, charges, 15-minute spend buckets, fired alerts.

``budget_charges`` is append-only and keyed by charge id (a chat decision or a feedback's decision),
so a charge is counted once however often it is retried; ``budget_spend`` sums the charges per
(scope, subject, bucket) and is only ever incremented in the same transaction as the charge row.

Revision ID: 0004
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0005"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "budget_charges",
        sa.Column("charge_id", sa.String(80), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(200)),
        sa.Column("user_id", sa.String(200)),
        sa.Column("key_id", sa.String(32)),
    )
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("spent_usd", sa.Float, nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("budget", sa.String(200), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("alert_key", sa.String(64), primary_key=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("budget_alerts", "budget_spend", "budget_charges", "budgets"):
        op.drop_table(table)
