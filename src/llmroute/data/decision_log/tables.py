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
    sa.Index("ix_decisions_created_at", "created_at", "decision_id"),
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
