"""The joined view of the log (decision + outcome + latest feedback) as Arrow batches, and Parquet export."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from llmroute.data.decision_log import rows
from llmroute.data.decision_log.records import FeedbackRecord, OutcomeRecord


class JoinSource(Protocol):
    """What the joined view reads from a log (:class:`llmroute.data.decision_log.store.DecisionLogStore`
    is one): decision rows page by page, and the outcome and latest feedback of a page's decisions."""

    def iter_decision_rows(self, since: datetime | None = None, batch_size: int = 1000,
                           until: datetime | None = None) -> Iterator[list[dict[str, Any]]]: ...

    def outcomes_for(self, decision_ids: Sequence[str]) -> dict[str, OutcomeRecord]: ...

    def latest_feedback_for(self, decision_ids: Sequence[str]) -> dict[str, FeedbackRecord]: ...

_TS = pa.timestamp("us", tz="UTC")
CANDIDATE_TYPE = pa.struct([
    ("model", pa.string()),
    ("probability", pa.float64()),
    ("expected_cost_usd", pa.float64()),
    ("eligible", pa.bool_()),
    ("excluded_by", pa.string()),
])

JOINED_SCHEMA = pa.schema([
    ("decision_id", pa.string()),
    ("created_at", _TS),
    ("source", pa.string()),
    ("tenant", pa.string()),
    ("user", pa.string()),
    ("prompt", pa.string()),
    ("prompt_sha256", pa.string()),
    ("embedding", pa.list_(pa.float32())),
    ("embedder", pa.string()),
    ("router_version", pa.string()),
    ("arm", pa.string()),
    ("candidates", pa.list_(CANDIDATE_TYPE)),
    ("constraints", pa.string()),  # JSON
    ("target", pa.string()),  # the target's text, a relative one rounded to a whole percent
    ("target_value", pa.float64()),  # the target exact (null in rows logged before 0007, or without a target)
    ("target_kind", pa.string()),  # relative | absolute
    ("rule", pa.string()),
    ("knob", pa.float64()),
    ("chosen_model", pa.string()),
    ("propensity", pa.float64()),
    ("task_hint", pa.string()),
    ("reason", pa.string()),
    ("outcome_model", pa.string()),
    ("ok", pa.bool_()),
    ("error", pa.string()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("latency_ms", pa.float64()),
    ("attempts", pa.string()),  # JSON list, one entry per cascade call
    ("outcome_created_at", _TS),
    ("quality", pa.float64()),
    ("feedback_comment", pa.string()),
    ("feedback_created_at", _TS),
])


def _row(m: dict[str, Any], outcome: Any, fb: Any) -> dict[str, Any]:
    cands = [{**c, "expected_cost_usd": c.get("expected_cost_usd", c.get("expected_cost"))}
             for c in (m["candidates"] or [])]
    return {
        "decision_id": m["decision_id"],
        "created_at": rows.from_db_time(m["created_at"]),
        "source": m["source"],
        "tenant": m["tenant"],
        "user": m["user_id"],
        "prompt": m["prompt"],
        "prompt_sha256": m["prompt_sha256"],
        "embedding": rows.embedding_from_bytes(m["embedding"]),
        "embedder": m["embedder"],
        "router_version": m["router_version"],
        "arm": m["arm"],
        "candidates": cands,
        "constraints": json.dumps(m["constraints"], sort_keys=True),
        "target": m["target"],
        "target_value": m.get("target_value"),
        "target_kind": m.get("target_kind"),
        "rule": m["rule"],
        "knob": m["knob"],
        "chosen_model": m["chosen_model"],
        "propensity": m["propensity"],
        "task_hint": m["task_hint"],
        "reason": m.get("reason"),
        "outcome_model": outcome.model if outcome else None,
        "ok": outcome.ok if outcome else None,
        "error": outcome.error if outcome else None,
        "input_tokens": outcome.input_tokens if outcome else None,
        "output_tokens": outcome.output_tokens if outcome else None,
        "cost_usd": outcome.cost_usd if outcome else None,
        "latency_ms": outcome.latency_ms if outcome else None,
        "attempts": json.dumps(list(outcome.attempts), sort_keys=True) if outcome else None,
        "outcome_created_at": outcome.created_at if outcome else None,
        "quality": fb.quality if fb else None,
        "feedback_comment": fb.comment if fb else None,
        "feedback_created_at": fb.created_at if fb else None,
    }


def joined_batches(store: JoinSource, since: datetime | None = None,
                   batch_size: int = 1000, until: datetime | None = None) -> Iterator[pa.RecordBatch]:
    """One Arrow batch per page of decisions (made in ``[since, until)``), each joined to its outcome
    and latest feedback."""
    for page in store.iter_decision_rows(since, batch_size, until):
        ids = [m["decision_id"] for m in page]
        outcomes = store.outcomes_for(ids)
        feedback = store.latest_feedback_for(ids)
        yield pa.RecordBatch.from_pylist(
            [_row(m, outcomes.get(m["decision_id"]), feedback.get(m["decision_id"])) for m in page],
            schema=JOINED_SCHEMA,
        )


def export_parquet(store: JoinSource, path: str | Path, since: datetime | None = None,
                   batch_size: int = 5000) -> int:
    """Write the joined log to ``path`` (Parquet), one batch at a time; returns the row count.

    The file is written to ``<path>.partial`` and renamed when complete, so a failed export never
    leaves a truncated file under the requested name. An empty log gives a valid empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    n = 0
    with pq.ParquetWriter(partial, JOINED_SCHEMA, compression="zstd") as writer:
        for batch in joined_batches(store, since, batch_size):
            writer.write_batch(batch)
            n += batch.num_rows
    partial.replace(path)
    return n
