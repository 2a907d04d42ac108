"""Conversions between records and table rows (embeddings as float32 bytes, times in UTC)."""

from __future__ import annotations

import dataclasses
import re
from array import array
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from llmroute.data.decision_log.records import DecisionRecord, FeedbackRecord, LoggedCandidate, OutcomeRecord


def to_db_time(dt: datetime, dialect: str) -> datetime:
    """Aware UTC for PostgreSQL; naive UTC for SQLite (which stores no offset)."""
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return utc.replace(tzinfo=None) if dialect == "sqlite" else utc


def from_db_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def embedding_to_bytes(embedding: tuple[float, ...] | None) -> bytes | None:
    if embedding is None:
        return None
    a = array("f", embedding)
    if a.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
        raise RuntimeError("float32 embeddings need a 4-byte C float")
    return a.tobytes()  # native order; every supported platform is little-endian


def embedding_from_bytes(raw: bytes | None) -> tuple[float, ...] | None:
    if raw is None:
        return None
    a = array("f")
    a.frombytes(bytes(raw))
    return tuple(a)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


NUL_REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _safe_text(s: str, nul: bool) -> str:
    if nul and "\x00" in s:
        s = s.replace("\x00", NUL_REPLACEMENT)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored as UTF-8
        s = _SURROGATE.sub(NUL_REPLACEMENT, s)
    return s


def _safe(value: Any, nul: bool) -> Any:
    if isinstance(value, str):
        return _safe_text(value, nul)
    if isinstance(value, dict):
        return {_safe_text(str(k), nul): _safe(v, nul) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v, nul) for v in value]
    return value


def storable_record(record: Any, nul: bool) -> Any:
    """``record`` (a decision-log record) with its text fields made storable like :func:`storable`
    (the same record when nothing needs it): what the rows *and* the dashboard rollups, keyed by
    tenant and model, are built from."""
    changes = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str):
            safe = _safe_text(value, nul)
            if safe != value:
                changes[f.name] = safe
    return dataclasses.replace(record, **changes) if changes else record


def storable(batch: list[dict[str, Any]], nul: bool) -> list[dict[str, Any]]:
    """Rows every backend can store: text that is not valid UTF-8 (lone surrogates) has those code
    points replaced by U+FFFD, and with ``nul`` (PostgreSQL, whose text and jsonb cannot hold it) so
    is every NUL character. The prompt's SHA-256 is of the original text, so a replaced prompt is
    still recognisable."""
    return [{k: _safe(v, nul) for k, v in row.items()} for row in batch]


def candidate_json(c: LoggedCandidate) -> dict[str, Any]:
    """A logged candidate as stored (a JSON object with the fields of :class:`LoggedCandidate`), built
    field by field: ``dataclasses.asdict`` deep-copies and was the writer's costliest step."""
    return {
        "model": c.model, "probability": c.probability, "expected_cost_usd": c.expected_cost_usd,
        "eligible": c.eligible, "excluded_by": c.excluded_by,
    }


def decision_row(r: DecisionRecord, dialect: str) -> dict[str, Any]:
    return {
        "decision_id": r.decision_id,
        "created_at": to_db_time(r.created_at, dialect),
        "tenant": r.tenant,
        "user_id": r.user,
        "prompt": r.prompt,
        "prompt_sha256": r.prompt_sha256,
        "embedding": embedding_to_bytes(r.embedding),
        "embedder": r.embedder,
        "router_version": r.router_version,
        "arm": r.arm,
        "candidates": [candidate_json(c) for c in r.candidates],
        "constraints": _jsonable(r.constraints),
        "target": r.target,
        "rule": r.rule,
        "knob": r.knob,
        "chosen_model": r.chosen_model,
        "propensity": r.propensity,
        "task_hint": r.task_hint,
        "source": r.source,
        "latency_ms": r.latency_ms,
        "reason_kind": r.reason_kind,
        "best_cost_usd": r.best_cost_usd,
        "seed_cost_usd": r.seed_cost_usd,
        "reason": r.reason,
    }


def decision_from_row(m: Mapping[Any, Any]) -> DecisionRecord:
    created = from_db_time(m["created_at"])
    assert created is not None
    return DecisionRecord(
        decision_id=m["decision_id"],
        created_at=created,
        tenant=m["tenant"],
        user=m["user_id"],
        prompt=m["prompt"],
        prompt_sha256=m["prompt_sha256"],
        embedding=embedding_from_bytes(m["embedding"]),
        embedder=m["embedder"],
        router_version=m["router_version"],
        arm=m["arm"],
        candidates=tuple(LoggedCandidate.coerce(c) for c in m["candidates"]),
        constraints=m["constraints"],
        target=m["target"],
        rule=m["rule"],
        knob=m["knob"],
        chosen_model=m["chosen_model"],
        propensity=m["propensity"],
        task_hint=m["task_hint"],
        source=m["source"],
        latency_ms=m.get("latency_ms"),
        reason_kind=m.get("reason_kind"),
        best_cost_usd=m.get("best_cost_usd"),
        seed_cost_usd=m.get("seed_cost_usd"),
        reason=m.get("reason"),
    )


def outcome_row(r: OutcomeRecord, dialect: str) -> dict[str, Any]:
    return {
        "decision_id": r.decision_id,
        "model": r.model,
        "ok": r.ok,
        "error": r.error,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost_usd": r.cost_usd,
        "latency_ms": r.latency_ms,
        "attempts": _jsonable(r.attempts),
        "created_at": to_db_time(r.created_at, dialect),
    }


def outcome_from_row(m: Mapping[Any, Any]) -> OutcomeRecord:
    return OutcomeRecord(
        decision_id=m["decision_id"],
        model=m["model"],
        ok=bool(m["ok"]),
        error=m["error"],
        input_tokens=m["input_tokens"],
        output_tokens=m["output_tokens"],
        cost_usd=m["cost_usd"],
        latency_ms=m["latency_ms"],
        attempts=tuple(m["attempts"] or ()),
        created_at=from_db_time(m["created_at"]),  # type: ignore[arg-type]  # a NOT NULL column
    )


def feedback_row(r: FeedbackRecord, dialect: str) -> dict[str, Any]:
    return {
        "feedback_id": r.feedback_id,
        "decision_id": r.decision_id,
        "quality": r.quality,
        "comment": r.comment,
        "created_at": to_db_time(r.created_at, dialect),
    }


def feedback_from_row(m: Mapping[Any, Any]) -> FeedbackRecord:
    return FeedbackRecord(
        feedback_id=m["feedback_id"],
        decision_id=m["decision_id"],
        quality=m["quality"],
        comment=m["comment"],
        created_at=from_db_time(m["created_at"]),  # type: ignore[arg-type]  # a NOT NULL column
    )
