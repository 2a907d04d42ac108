"""Rollups of the decision log: per-bucket sums and latency histograms the dashboard reads.

The rule: every decision, outcome and feedback the store *inserts* is added, in the same transaction,
to the ``rollup`` and ``rollup_latency`` tables (:mod:`.tables`) at each resolution of
:data:`RESOLUTIONS` (5 minutes and 6 hours), keyed by (bucket start in epoch seconds, tenant, model).
A record the store skips as a duplicate adds nothing, so a retried batch never counts twice, and a
dashboard query over 30 days reads ~120 buckets per (tenant, model) however long the log is.

Attribution:

* a **decision** counts in the bucket of its ``created_at``, its tenant ('' = none) and chosen model:
  ``decisions``, the reason kinds (``explored``, ``constrained``, ``fallback``, ``static``), its expected cost, and
  where known the counterfactual costs and savings (``best_*``: the same prompt on the best single
  model; ``seed_*``: under the seed budget rule), and its routing latency (source ``route`` only);
* an **outcome** (a proxied call) counts in its decision's bucket and tenant, under the model that
  answered: ``calls``, ``calls_failed``, ``escalations`` (more than one model tried), realised
  ``cost_usd``, every attempt (``attempts``, ``attempt_errors``, ``attempt_timeouts``) and the
  answered call's latency;
* **feedback** counts in its decision's bucket, tenant and chosen model; only the latest feedback of a
  decision counts (a later one replaces the earlier one's contribution): ``feedback``,
  ``quality_sum`` and ``met`` (quality >= :data:`SUCCESS_THRESHOLD`).

An outcome or feedback whose decision is not (yet) in the log is counted at its own time under tenant
and model :data:`UNKNOWN`. :func:`rebuild` recomputes both tables from the rows (for logs written
before the rollups existed); run it while no service writes to the log.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from llmroute.data.decision_log import rows, tables
from llmroute.data.decision_log.bulk import BulkAdd
from llmroute.data.decision_log.records import DecisionRecord, FeedbackRecord, OutcomeRecord

if TYPE_CHECKING:
    from llmroute.data.decision_log.store import DecisionLogStore

RESOLUTIONS = (300, 21600)
"""Bucket widths in seconds that every record is rolled up at: 5 minutes (hour and day views) and
6 hours (longer views)."""

SUCCESS_THRESHOLD = 0.5
"""Feedback quality at or above which an answer "met the target" (training's default success threshold)."""

UNKNOWN = "(unknown)"
"""Tenant and model of an outcome or feedback whose decision is not in the log."""

LATENCY_BASE_MS = 0.1
LATENCY_GROWTH = 2.0 ** 0.25
LATENCY_SLOTS = 100
"""Latency histogram: slot 0 holds <= 0.1 ms, slot k (k >= 1) holds (0.1·g^(k-1), 0.1·g^k] ms with
g = 2^(1/4) (a percentile read from it is within ±9% of the exact one), the last slot everything above."""

ROUTE, CALL = "route", "call"


def latency_slot(ms: float) -> int:
    """The histogram slot of a latency in milliseconds (see :data:`LATENCY_SLOTS`)."""
    if not ms > LATENCY_BASE_MS:  # also NaN
        return 0
    k = math.ceil(math.log(ms / LATENCY_BASE_MS) / math.log(LATENCY_GROWTH) - 1e-9)
    return max(1, min(LATENCY_SLOTS - 1, k))


def slot_value(slot: int) -> float:
    """A representative latency of ``slot``: the geometric middle of its range."""
    if slot <= 0:
        return LATENCY_BASE_MS
    return LATENCY_BASE_MS * LATENCY_GROWTH ** (slot - 0.5)


def percentile_from_histogram(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of a latency histogram ``{slot: count}``; None when empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for slot in sorted(counts):
        seen += counts[slot]
        if seen >= rank:
            return slot_value(slot)
    return slot_value(max(counts))


def epoch(dt: datetime) -> int:
    """Whole epoch seconds of ``dt`` (naive = UTC)."""
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return int(utc.timestamp())


@dataclass
class RollupDelta:
    """Additions to the rollup tables, accumulated in memory and written by :func:`apply`."""

    sums: dict[tuple[int, int, str, str], dict[str, float]] = field(default_factory=dict)
    latency: dict[tuple[int, int, str, str, int], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, at: datetime, tenant: str | None, model: str, **measures: float) -> None:
        t = epoch(at)
        for res in RESOLUTIONS:
            key = (res, t - t % res, tenant or "", model)
            row = self.sums.setdefault(key, {})
            for name, value in measures.items():
                row[name] = row.get(name, 0) + value

    def add_latency(self, at: datetime, tenant: str | None, kind: str, ms: float | None) -> None:
        if ms is None:
            return
        t, slot = epoch(at), latency_slot(float(ms))
        for res in RESOLUTIONS:
            self.latency[(res, t - t % res, tenant or "", kind, slot)] += 1

    def __bool__(self) -> bool:
        return bool(self.sums) or bool(self.latency)


def add_decision(delta: RollupDelta, r: DecisionRecord) -> None:
    """Count one decision (see the module docstring)."""
    chosen = r.chosen_expected_cost()
    m: dict[str, float] = {"decisions": 1, "expected_cost_usd": chosen or 0.0}
    if r.reason_kind == "explored":
        m["explored"] = 1
    elif r.reason_kind == "constraint":
        m["constrained"] = 1
    elif r.reason_kind == "fallback":
        m["fallback"] = 1
    elif r.reason_kind == "static":
        m["static"] = 1
    if chosen is not None and r.best_cost_usd is not None:
        m.update(best_n=1, best_cost_usd=r.best_cost_usd, best_saving_usd=r.best_cost_usd - chosen)
    if chosen is not None and r.seed_cost_usd is not None:
        m.update(seed_n=1, seed_cost_usd=r.seed_cost_usd, seed_saving_usd=r.seed_cost_usd - chosen)
    delta.add(r.created_at, r.tenant, r.chosen_model, **m)
    if r.source == ROUTE:
        delta.add_latency(r.created_at, r.tenant, ROUTE, r.latency_ms)


@dataclass(frozen=True)
class DecisionKey:
    """Where a decision's outcome and feedback are counted."""

    created_at: datetime
    tenant: str | None
    model: str


def add_outcome(delta: RollupDelta, o: OutcomeRecord, decision: DecisionKey | None) -> None:
    """Count one outcome (see the module docstring)."""
    at, tenant = (decision.created_at, decision.tenant) if decision else (o.created_at, UNKNOWN)
    attempts = [a for a in o.attempts if isinstance(a, Mapping)]
    errors = sum(1 for a in attempts if not a.get("ok", True))
    timeouts = sum(1 for a in attempts if a.get("error_kind") == "timeout")
    models_tried = {a.get("model") for a in attempts}
    delta.add(at, tenant, o.model or UNKNOWN, calls=1, calls_failed=0 if o.ok else 1,
              escalations=1 if len(models_tried) > 1 else 0, cost_usd=o.cost_usd or 0.0,
              attempts=len(attempts), attempt_errors=errors, attempt_timeouts=timeouts)
    if o.ok:
        delta.add_latency(at, tenant, CALL, o.latency_ms)


def _feedback_measures(fb: FeedbackRecord | None, sign: int) -> dict[str, float]:
    if fb is None:
        return {}
    return {"feedback": sign, "quality_sum": sign * fb.quality, "met": sign * int(fb.quality >= SUCCESS_THRESHOLD)}


def add_feedback_change(delta: RollupDelta, before: FeedbackRecord | None, after: FeedbackRecord,
                        decision: DecisionKey | None) -> None:
    """Replace ``before`` (the decision's latest feedback until now, or None) by ``after``."""
    at, tenant, model = (decision.created_at, decision.tenant, decision.model) if decision else (
        after.created_at, UNKNOWN, UNKNOWN)
    m = _feedback_measures(after, 1)
    for name, value in _feedback_measures(before, -1).items():
        m[name] += value
    delta.add(at, tenant, model, **m)


def decision_keys(conn: sa.Connection, decision_ids: Iterable[str]) -> dict[str, DecisionKey]:
    """The bucket time, tenant and chosen model of each given decision that is in the log."""
    ids = sorted(set(decision_ids))
    d = tables.decisions
    out: dict[str, DecisionKey] = {}
    for i in range(0, len(ids), 500):
        q = sa.select(d.c.decision_id, d.c.created_at, d.c.tenant, d.c.chosen_model).where(
            d.c.decision_id.in_(ids[i:i + 500]))
        for m in conn.execute(q).mappings():
            created = rows.from_db_time(m["created_at"])
            assert created is not None
            out[m["decision_id"]] = DecisionKey(created, m["tenant"], m["chosen_model"])
    return out


def _latest(items: Sequence[FeedbackRecord]) -> FeedbackRecord | None:
    return max(items, key=lambda f: (rows.from_db_time(f.created_at), f.feedback_id), default=None)


def roll_up_inserted(conn: sa.Connection, dialect: str, decisions: Sequence[DecisionRecord],
                     outcomes: Sequence[OutcomeRecord], feedback: Sequence[FeedbackRecord],
                     statements: dict[str, Any] | None = None) -> None:
    """Add the records just inserted on ``conn`` (duplicates already left out) to the rollups.

    Call after the rows are inserted, in the same transaction: outcome and feedback lookups see the
    decisions of the same batch, and a feedback's predecessor is read from the feedback table.
    ``statements``: a cache of the upsert statements (see :func:`apply`)."""
    delta = RollupDelta()
    for r in decisions:
        add_decision(delta, r)
    keys = decision_keys(conn, [o.decision_id for o in outcomes] + [f.decision_id for f in feedback])
    for o in outcomes:
        add_outcome(delta, o, keys.get(o.decision_id))
    if feedback:
        new_ids = {f.feedback_id for f in feedback}
        fb = tables.feedback
        by_decision: dict[str, list[FeedbackRecord]] = defaultdict(list)
        ids = sorted({f.decision_id for f in feedback})
        for i in range(0, len(ids), 500):
            for m in conn.execute(sa.select(fb).where(fb.c.decision_id.in_(ids[i:i + 500]))).mappings():
                by_decision[m["decision_id"]].append(rows.feedback_from_row(m))
        for decision_id, items in by_decision.items():
            after = _latest(items)
            if after is None or after.feedback_id not in new_ids:
                continue  # the newly inserted feedback is older than what was there: nothing changes
            before = _latest([f for f in items if f.feedback_id not in new_ids])
            add_feedback_change(delta, before, after, keys.get(decision_id))
    apply(conn, dialect, delta, statements)


_ROLLUP_KEYS = ("resolution_s", "bucket", "tenant", "model")
_LATENCY_KEYS = ("resolution_s", "bucket", "tenant", "kind", "slot")
_MEASURES = tables.ROLLUP_COUNTS + tables.ROLLUP_SUMS


def _bulk_add(statements: dict[str, Any], conn: sa.Connection, table: sa.Table, keys: Sequence[str],
              measures: Sequence[str]) -> BulkAdd:
    name = f"add:{table.name}"
    bulk = statements.get(name)
    if bulk is None:
        bulk = statements[name] = BulkAdd(conn.dialect, table, keys, measures)
    return bulk


def apply(conn: sa.Connection, dialect: str, delta: RollupDelta, statements: dict[str, Any] | None = None) -> None:
    """Add ``delta`` to the rollup tables on ``conn``: one multi-row upsert per table with every
    (bucket, key) of the delta (:class:`~llmroute.data.decision_log.bulk.BulkAdd`). Rows are upserted
    in key order, so concurrent writers (PostgreSQL) lock shared rows in the same order.
    ``statements`` keeps the statements for the next batch (a store passes its own)."""
    if statements is None:
        statements = {}
    if delta.sums:
        bulk = _bulk_add(statements, conn, tables.rollup, _ROLLUP_KEYS, _MEASURES)
        rows_: list[tuple[Any, ...]] = []
        for key, measures in sorted(delta.sums.items()):
            row: dict[str, Any] = dict(zip(_ROLLUP_KEYS, key))
            for name in tables.ROLLUP_COUNTS:
                row[name] = int(measures.get(name, 0))
            for name in tables.ROLLUP_SUMS:
                row[name] = float(measures.get(name, 0.0))
            rows_.append(bulk.row(row))
        bulk.add(conn, rows_)
    if delta.latency:
        bulk = _bulk_add(statements, conn, tables.rollup_latency, _LATENCY_KEYS, ("n",))
        bulk.add(conn, [bulk.row({**dict(zip(_LATENCY_KEYS, key)), "n": n}) for key, n in sorted(delta.latency.items())])


def rebuild(store: DecisionLogStore, batch_size: int = 5000,
            progress: Callable[[int], None] | None = None) -> int:
    """Recompute both rollup tables from the log's rows; returns the number of decisions read.

    Deletes the rollups, then pages through the decisions (each page with its outcomes and latest
    feedback) and finally the outcomes and feedback whose decision is not in the log, committing page
    by page. ``progress(decisions_so_far)`` is called after each page. Exact where the incremental
    rollup approximates (feedback that arrived before its decision)."""
    with store.engine.begin() as conn:
        conn.execute(sa.delete(tables.rollup))
        conn.execute(sa.delete(tables.rollup_latency))
    n = 0
    for page in store.iter_decision_rows(None, batch_size):
        ids = [m["decision_id"] for m in page]
        outcomes = store.outcomes_for(ids)
        feedback = store.latest_feedback_for(ids)
        delta = RollupDelta()
        for m in page:
            r = rows.decision_from_row(m)
            add_decision(delta, r)
            key = DecisionKey(r.created_at, r.tenant, r.chosen_model)
            if r.decision_id in outcomes:
                add_outcome(delta, outcomes[r.decision_id], key)
            if r.decision_id in feedback:
                add_feedback_change(delta, None, feedback[r.decision_id], key)
        with store.engine.begin() as conn:
            apply(conn, store.dialect, delta)
        n += len(page)
        if progress is not None:
            progress(n)
    d, o, fb = tables.decisions, tables.outcomes, tables.feedback
    orphan = ~sa.exists().where(d.c.decision_id == o.c.decision_id)
    delta = RollupDelta()
    with store.engine.connect() as conn:
        for row in conn.execute(sa.select(o).where(orphan)).mappings():
            add_outcome(delta, rows.outcome_from_row(row), None)
        latest: dict[str, FeedbackRecord] = {}
        q = sa.select(fb).where(~sa.exists().where(d.c.decision_id == fb.c.decision_id))
        for row in conn.execute(q).mappings():
            f = rows.feedback_from_row(row)
            prev = latest.get(f.decision_id)
            latest[f.decision_id] = f if prev is None else _latest([prev, f])  # type: ignore[assignment]  # of two: never None
        for f in latest.values():
            add_feedback_change(delta, None, f, None)
    if delta:
        with store.engine.begin() as conn:
            apply(conn, store.dialect, delta)
    return n
