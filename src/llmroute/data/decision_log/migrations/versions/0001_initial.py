"""Decision log: decisions, outcomes, feedback.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(200)),
        sa.Column("user_id", sa.String(200)),
        sa.Column("prompt", sa.Text),
        sa.Column("prompt_sha256", sa.String(64), nullable=False),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("embedder", sa.String(200)),
        sa.Column("router_version", sa.String(200), nullable=False),
        sa.Column("arm", sa.String(200)),
        sa.Column("candidates", JSONType, nullable=False),
        sa.Column("constraints", JSONType, nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("rule", sa.String(200)),
        sa.Column("knob", sa.Float),
        sa.Column("chosen_model", sa.String(200), nullable=False),
        sa.Column("propensity", sa.Float, nullable=False),
        sa.Column("task_hint", sa.String(200)),
    )
    op.create_table(
        "outcomes",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("attempts", JSONType, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.String(64), primary_key=True),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_decision_id", "feedback", ["decision_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("outcomes")
    op.drop_table("decisions")
