"""The dashboard: why and how fast each decision was made, its counterfactual costs, and rollups.

Decisions gain ``latency_ms`` (routing time), ``reason_kind`` (router / explored / constraint /
fallback / static), ``best_cost_usd`` and ``seed_cost_usd`` (the expected cost of the same prompt on
the best single model and under the seed budget rule), all NULL for rows written before, and an
index on (tenant, created_at). Two rollup tables hold per-bucket sums (``rollup``) and latency
histograms (``rollup_latency``) that the writer keeps up to date in the same transaction as the rows;
decisions logged before this revision are added by ``llmroute logs rollup --rebuild``.

Revision ID: 0006
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

_COUNTS = (
    "decisions", "explored", "constrained", "fallback", "static", "best_n", "seed_n",
    "calls", "calls_failed", "escalations", "attempts", "attempt_errors", "attempt_timeouts",
    "feedback", "met",
)
_SUMS = (
    "expected_cost_usd", "best_cost_usd", "best_saving_usd", "seed_cost_usd", "seed_saving_usd",
    "cost_usd", "quality_sum",
)


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("latency_ms", sa.Float))
        batch.add_column(sa.Column("reason_kind", sa.String(32)))
        batch.add_column(sa.Column("best_cost_usd", sa.Float))
        batch.add_column(sa.Column("seed_cost_usd", sa.Float))
    op.create_index("ix_decisions_tenant_created_at", "decisions", ["tenant", "created_at"])
    op.create_table(
        "rollup",
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in _COUNTS],
        *[sa.Column(name, sa.Float, nullable=False, server_default="0") for name in _SUMS],
    )
    op.create_index("ix_rollup_tenant", "rollup", ["resolution_s", "tenant", "bucket"])
    op.create_table(
        "rollup_latency",
        sa.Column("resolution_s", sa.Integer, primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_rollup_latency_tenant", "rollup_latency", ["resolution_s", "tenant", "bucket"])


def downgrade() -> None:
    op.drop_index("ix_rollup_latency_tenant", table_name="rollup_latency")
    op.drop_table("rollup_latency")
    op.drop_index("ix_rollup_tenant", table_name="rollup")
    op.drop_table("rollup")
    op.drop_index("ix_decisions_tenant_created_at", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        for name in ("seed_cost_usd", "best_cost_usd", "reason_kind", "latency_ms"):
            batch.drop_column(name)
