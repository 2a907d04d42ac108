"""What the dashboard shows, read from the rollups in a handful of indexed queries.

:func:`read_overview` answers for a window (:data:`WINDOWS`: the last hour, day or 30 days up to
``now``) and optionally one tenant: the sums per chart step and model (spend, decisions), per model,
per tenant and in total; the latency percentiles of ``/route`` and of proxied calls; the tenants seen;
and the most recent decisions. It reads only the ``rollup`` tables (bounded by the number of buckets,
tenants and models, not by the number of decisions) plus an indexed ``LIMIT`` on the decisions, so a
page load does not grow with the log. The window starts at the bucket containing ``now - length``,
so it may include up to one bucket (5 minutes, or 6 hours for 30 days) more than asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmroute.data.decision_log import rows, tables
from llmroute.data.decision_log.rollup import CALL, ROUTE, percentile_from_histogram


@dataclass(frozen=True)
class Window:
    """A dashboard window: its length, the rollup resolution it reads and its chart step (seconds)."""

    name: str
    length_s: int
    resolution_s: int
    step_s: int


WINDOWS: Mapping[str, Window] = {
    "hour": Window("hour", 3600, 300, 300),
    "day": Window("day", 86400, 300, 3600),
    "30d": Window("30d", 30 * 86400, 21600, 86400),
}

MEASURES = tables.ROLLUP_COUNTS + tables.ROLLUP_SUMS


@dataclass(frozen=True)
class RecentDecision:
    """One of the latest decisions; ``prompt`` is None unless prompts may be shown."""

    decision_id: str
    created_at: datetime
    tenant: str | None
    model: str
    source: str
    reason_kind: str | None
    expected_cost_usd: float | None
    prompt: str | None


@dataclass(frozen=True)
class Overview:
    """The numbers of one dashboard view. Measures are the rollup's (:data:`MEASURES`); ``series``
    holds, per model, one value per chart step (``buckets``, epoch seconds) of ``decisions``,
    ``cost_usd`` and ``expected_cost_usd``."""

    window: Window
    tenant: str | None
    since: datetime
    until: datetime
    buckets: tuple[int, ...]
    series: Mapping[str, Mapping[str, tuple[float, ...]]]
    by_model: Mapping[str, Mapping[str, float]]
    by_tenant: Mapping[str, Mapping[str, float]]
    totals: Mapping[str, float]
    latency: Mapping[str, Mapping[str, float | None]]
    tenants: tuple[str, ...]
    recent: tuple[RecentDecision, ...]


def derived(m: Mapping[str, float]) -> dict[str, float | None]:
    """Rates and savings from a measures mapping (None where the denominator is 0):
    ``savings_vs_best_pct`` = best_saving / best_cost, ``savings_vs_seed_pct`` likewise,
    ``escalation_rate`` = escalations / calls, ``call_failure_rate`` = calls_failed / calls,
    ``attempt_error_rate`` and ``attempt_timeout_rate`` per attempt, ``mean_quality`` = quality_sum /
    feedback, ``target_attainment`` = met / feedback, ``explored_share``, ``constrained_share`` and
    ``fallback_share`` per decision."""

    def ratio(a: str, b: str) -> float | None:
        return m.get(a, 0) / m[b] if m.get(b) else None

    return {
        "savings_vs_best_pct": ratio("best_saving_usd", "best_cost_usd"),
        "savings_vs_seed_pct": ratio("seed_saving_usd", "seed_cost_usd"),
        "escalation_rate": ratio("escalations", "calls"),
        "call_failure_rate": ratio("calls_failed", "calls"),
        "attempt_error_rate": ratio("attempt_errors", "attempts"),
        "attempt_timeout_rate": ratio("attempt_timeouts", "attempts"),
        "mean_quality": ratio("quality_sum", "feedback"),
        "target_attainment": ratio("met", "feedback"),
        "explored_share": ratio("explored", "decisions"),
        "constrained_share": ratio("constrained", "decisions"),
        "fallback_share": ratio("fallback", "decisions"),
    }


def read_overview(engine: Engine, window: str, tenant: str | None = None, now: datetime | None = None,
                  recent: int = 20) -> Overview:
    """The dashboard's numbers for ``window`` (a key of :data:`WINDOWS`) ending at ``now`` (default: the
    current time), for ``tenant`` ('' = requests without a tenant; None = every tenant). Raises
    ValueError naming the windows on an unknown one."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: expected one of {', '.join(WINDOWS)}")
    w = WINDOWS[window]
    until = (now or datetime.now(UTC)).astimezone(UTC)
    end = int(until.timestamp())
    start = end - w.length_s
    first_bucket = start - start % w.resolution_s
    first_step, last_step = start - start % w.step_s, end - end % w.step_s
    buckets = tuple(range(first_step, last_step + 1, w.step_s))
    r, lat = tables.rollup, tables.rollup_latency

    def where(t: sa.Table) -> list[Any]:
        cond = [t.c.resolution_s == w.resolution_s, t.c.bucket >= first_bucket, t.c.bucket <= end]
        if tenant is not None:
            cond.append(t.c.tenant == tenant)
        return cond

    step = (r.c.bucket // w.step_s) * w.step_s
    q = (sa.select(step.label("step"), r.c.tenant, r.c.model, *[sa.func.sum(r.c[m]).label(m) for m in MEASURES])
         .where(*where(r)).group_by(step, r.c.tenant, r.c.model))
    lq = sa.select(lat.c.kind, lat.c.slot, sa.func.sum(lat.c.n).label("n")).where(*where(lat)).group_by(lat.c.kind, lat.c.slot)
    tq = (sa.select(r.c.tenant).distinct()
          .where(r.c.resolution_s == w.resolution_s, r.c.bucket >= first_bucket, r.c.bucket <= end))
    d = tables.decisions
    since_db = rows.to_db_time(datetime.fromtimestamp(start, UTC), engine.dialect.name)
    dq = (sa.select(d.c.decision_id, d.c.created_at, d.c.tenant, d.c.chosen_model, d.c.source, d.c.reason_kind,
                    d.c.candidates, d.c.prompt)
          .where(d.c.created_at >= since_db).order_by(d.c.created_at.desc()).limit(recent))
    if tenant is not None:
        dq = dq.where(d.c.tenant == tenant) if tenant else dq.where(sa.or_(d.c.tenant.is_(None), d.c.tenant == ""))

    index = {b: i for i, b in enumerate(buckets)}
    hist: dict[str, dict[int, int]] = {ROUTE: {}, CALL: {}}
    with engine.connect() as conn:
        result = conn.execute(q).all()
        for m in conn.execute(lq).mappings():
            if m["kind"] in hist:
                hist[m["kind"]][int(m["slot"])] = int(m["n"])
        tenants = tuple(sorted(t for (t,) in conn.execute(tq)))
        latest = []
        for m in conn.execute(dq).mappings():
            cost = next((c.get("expected_cost_usd") for c in m["candidates"] or [] if c.get("model") == m["chosen_model"]), None)
            created = rows.from_db_time(m["created_at"])
            assert created is not None
            latest.append(RecentDecision(m["decision_id"], created, m["tenant"], m["chosen_model"], m["source"],
                                         m["reason_kind"], cost, m["prompt"]))
    latency = {
        kind: {"n": float(sum(h.values())), "p50_ms": percentile_from_histogram(h, 0.5),
               "p99_ms": percentile_from_histogram(h, 0.99)}
        for kind, h in hist.items()
    }
    # the (step, tenant, model) sums, folded per model, per tenant, in total and per model and step
    values = np.array([r[3:] for r in result], dtype=np.float64).reshape(len(result), len(MEASURES))
    models = np.array([r[2] for r in result], dtype=object)
    whos = np.array([r[1] for r in result], dtype=object)
    steps = np.array([index.get(int(r[0]), -1) for r in result], dtype=np.int64)

    def fold(keys: np.ndarray) -> dict[str, dict[str, float]]:
        return {str(k): dict(zip(MEASURES, values[keys == k].sum(axis=0).tolist())) for k in sorted(set(keys.tolist()))}

    series: dict[str, dict[str, tuple[float, ...]]] = {}
    shown = ("decisions", "cost_usd", "expected_cost_usd")
    cols = [MEASURES.index(n) for n in shown]
    for model in sorted(set(models.tolist())):
        rows_ = (models == model) & (steps >= 0)
        grid = np.zeros((len(buckets), len(cols)))
        np.add.at(grid, steps[rows_], values[rows_][:, cols])
        series[str(model)] = {n: tuple(grid[:, j].tolist()) for j, n in enumerate(shown)}
    totals = dict(zip(MEASURES, values.sum(axis=0).tolist()))
    return Overview(
        window=w, tenant=tenant, since=datetime.fromtimestamp(start, UTC), until=until, buckets=buckets,
        series=series, by_model=fold(models), by_tenant=fold(whos), totals=totals,
        latency=latency, tenants=tenants, recent=tuple(latest),
    )
