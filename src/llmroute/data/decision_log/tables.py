"""SQLAlchemy Core tables of the decision log, at the newest migration (keep in step with ``migrations/``).

Column ``user_id`` holds :attr:`DecisionRecord.user` (``user`` is reserved in PostgreSQL).
Embeddings are stored as little-endian float32 bytes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

decisions = sa.Table(
    "decisions",
    metadata,
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
    # added in 0002
    sa.Column("source", sa.String(32), nullable=False, server_default="unknown"),
    # added in 0006 (the dashboard): how long routing took, why, and what the counterfactuals would cost
    sa.Column("latency_ms", sa.Float),
    sa.Column("reason_kind", sa.String(32)),
    sa.Column("best_cost_usd", sa.Float),
    sa.Column("seed_cost_usd", sa.Float),
    # added in 0005 (after 0006)
    sa.Column("reason", sa.Text),
    # added in 0007: the quality target exact (``target`` is its rounded text)
    sa.Column("target_value", sa.Float),
    sa.Column("target_kind", sa.String(16)),
    sa.Index("ix_decisions_created_at", "created_at", "decision_id"),
    sa.Index("ix_decisions_tenant_created_at", "tenant", "created_at"),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
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

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.String(64), primary_key=True),
    sa.Column("decision_id", sa.String(64), nullable=False, index=True),
    sa.Column("quality", sa.Float, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


# -- the dashboard's rollups (added in 0006; see llmroute.data.decision_log.rollup) -------------------

ROLLUP_COUNTS = (
    "decisions", "explored", "constrained", "fallback", "static", "best_n", "seed_n",
    "calls", "calls_failed", "escalations", "attempts", "attempt_errors", "attempt_timeouts",
    "feedback", "met",
)
"""Integer measures of :data:`rollup` (sums of counts)."""

ROLLUP_SUMS = (
    "expected_cost_usd", "best_cost_usd", "best_saving_usd", "seed_cost_usd", "seed_saving_usd",
    "cost_usd", "quality_sum",
)
"""Float measures of :data:`rollup` (sums of USD or of feedback quality)."""

rollup = sa.Table(
    "rollup",
    metadata,
    sa.Column("resolution_s", sa.Integer, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),  # epoch seconds of the bucket's start (UTC)
    sa.Column("tenant", sa.String(200), primary_key=True),  # '' = no tenant
    sa.Column("model", sa.String(200), primary_key=True),
    *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in ROLLUP_COUNTS],
    *[sa.Column(name, sa.Float, nullable=False, server_default="0") for name in ROLLUP_SUMS],
    sa.Index("ix_rollup_tenant", "resolution_s", "tenant", "bucket"),
)

rollup_latency = sa.Table(
    "rollup_latency",
    metadata,
    sa.Column("resolution_s", sa.Integer, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # 'route' | 'call'
    sa.Column("slot", sa.Integer, primary_key=True),  # histogram slot (llmroute.data.decision_log.rollup.latency_slot)
    sa.Column("n", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_rollup_latency_tenant", "resolution_s", "tenant", "bucket"),
)

# ---- budgets and the spend ledger (added in 0004; see llmroute.data.decision_log.ledger) ----------
budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("spec", JSONType, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # file | api
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

budget_charges = sa.Table(
    "budget_charges",
    metadata,
    sa.Column("charge_id", sa.String(80), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # chat | feedback
    sa.Column("tenant", sa.String(200)),
    sa.Column("user_id", sa.String(200)),
    sa.Column("key_id", sa.String(32)),
)

budget_spend = sa.Table(
    "budget_spend",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("subject", sa.String(200), primary_key=True),
    sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("spent_usd", sa.Float, nullable=False),
    sa.Column("calls", sa.Integer, nullable=False),
)

budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("budget", sa.String(200), primary_key=True),
    sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("alert_key", sa.String(64), primary_key=True),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
)
