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


def _jsonable(value: Any, nul: bool = False) -> Any:
    """A JSON copy of ``value`` (mappings with text keys, lists) whose strings are storable
    (:func:`storable_record`; ``nul``: PostgreSQL), made in one pass."""
    if isinstance(value, str):
        return _safe_text(value, nul)
    if isinstance(value, Mapping):
        return {_safe_text(str(k), nul): _jsonable(v, nul) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, nul) for v in value]
    return value


NUL_REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable_text(s: str, nul: bool) -> bool:
    """True when ``s`` can be stored as it is: no lone surrogate (none in ASCII text, the common
    case, checked without scanning twice) and, with ``nul``, no NUL character."""
    if nul and "\x00" in s:
        return False
    return s.isascii() or _SURROGATE.search(s) is None


def _safe_text(s: str, nul: bool) -> str:
    if _storable_text(s, nul):
        return s
    if nul:
        s = s.replace("\x00", NUL_REPLACEMENT)
    return _SURROGATE.sub(NUL_REPLACEMENT, s)  # lone surrogates cannot be stored as UTF-8


_TEXT_FIELDS: dict[type, tuple[str, ...]] = {}


def _text_fields(cls: type) -> tuple[str, ...]:
    names = _TEXT_FIELDS.get(cls)
    if names is None:  # the fields annotated str or str | None (as text under postponed annotations, or types)
        def is_text(t: Any) -> bool:
            text = t if isinstance(t, str) else str(t).replace("<class 'str'>", "str")
            return "str" in {p.strip() for p in text.removeprefix("Optional[").removesuffix("]").split("|")}

        names = tuple(f.name for f in dataclasses.fields(cls) if is_text(f.type))
        _TEXT_FIELDS[cls] = names
    return names


def storable_record(record: Any, nul: bool) -> Any:
    """``record`` (a decision-log record) with its text fields made storable: text that is not
    valid UTF-8 (lone surrogates) has those code points replaced by U+FFFD, and with ``nul``
    (PostgreSQL, whose text and jsonb cannot hold it) so is every NUL character. The same record
    when nothing needs it (checked without copying). The rows *and* the dashboard rollups, keyed by
    tenant and model, are built from it; the strings in its JSON fields are made storable as the
    row is built (:func:`decision_row`, :func:`outcome_row`). The prompt's SHA-256 is of the
    original text, so a replaced prompt is still recognisable."""
    changes = {}
    for name in _text_fields(type(record)):
        value = getattr(record, name)
        if value is not None and isinstance(value, str) and not _storable_text(value, nul):
            changes[name] = _safe_text(value, nul)
    return dataclasses.replace(record, **changes) if changes else record


def candidate_json(c: LoggedCandidate, nul: bool = False) -> dict[str, Any]:
    """A logged candidate as stored (a JSON object with the fields of :class:`LoggedCandidate`, its text
    storable; ``nul``: PostgreSQL), built field by field: ``dataclasses.asdict`` deep-copies and was
    the writer's costliest step."""
    model, excluded = c.model, c.excluded_by
    return {
        "model": _safe_text(model, nul) if isinstance(model, str) else model,
        "probability": c.probability, "expected_cost_usd": c.expected_cost_usd, "eligible": c.eligible,
        "excluded_by": _safe_text(excluded, nul) if isinstance(excluded, str) else excluded,
    }


def decision_row(r: DecisionRecord, dialect: str, nul: bool = False) -> dict[str, Any]:
    """The row of a decision whose text fields are storable (:func:`storable_record`); its JSON
    values are made storable here (``nul``: PostgreSQL)."""
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
        "candidates": [candidate_json(c, nul) for c in r.candidates],
        "constraints": _jsonable(r.constraints, nul),
        "target": r.target,
        "target_value": r.target_value,
        "target_kind": r.target_kind,
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
        target_value=m.get("target_value"),
        target_kind=m.get("target_kind"),
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


def outcome_row(r: OutcomeRecord, dialect: str, nul: bool = False) -> dict[str, Any]:
    return {
        "decision_id": r.decision_id,
        "model": r.model,
        "ok": r.ok,
        "error": r.error,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost_usd": r.cost_usd,
        "latency_ms": r.latency_ms,
        "attempts": _jsonable(r.attempts, nul),
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


def feedback_row(r: FeedbackRecord, dialect: str, nul: bool = False) -> dict[str, Any]:
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
