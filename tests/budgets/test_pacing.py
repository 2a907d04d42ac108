"""The pacing controller and the enforcement registry, on a synthetic knob table."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from llmroute.budgets import alerts
from llmroute.budgets.enforcement import BudgetStatus, Context, combine, names, register
from llmroute.budgets.pacing import GainTracker, PaceState, PacingController
from llmroute.budgets.spec import parse_budget
from llmroute.budgets.windows import window_at
from llmroute.router.decision import QualityTarget
from llmroute.router.knobs import KnobTable

K = 50
TABLE = KnobTable(
    rule="utility", knobs=tuple(np.geomspace(1e4, 1e-2, K)), quality=tuple(np.linspace(0.5, 0.9, K)),
    cost=tuple(np.linspace(0.001, 0.05, K)), best_single_model="m", best_single_quality=0.9, best_single_cost=0.05,
)


def test_allowance_follows_the_remaining_budget() -> None:
    pc = PacingController(TABLE, seed=0)
    base = QualityTarget(1.0)
    assert pc.step(PaceState(10, 0, 5, 0.5), base).allowance_usd is None  # too few calls to know the rate
    assert pc.step(PaceState(10, 0, 100, 0.001), base).allowance_usd is None  # too early
    on_plan = pc.step(PaceState(10.0, 5.0, 250, 0.5), base)  # 250 more calls expected, $5 left
    assert on_plan.allowance_usd == pytest.approx(0.02)
    assert on_plan.level == pytest.approx(0.02)  # the first paced request: no lag
    ahead = pc.step(PaceState(10.0, 8.0, 250, 0.5), base)
    behind = pc.step(PaceState(10.0, 1.0, 100, 0.5), base)  # $9 for 100 more calls
    assert ahead.level is not None and behind.level is not None
    assert ahead.level < on_plan.level < behind.level
    assert behind.index == K - 1 and behind.level == pytest.approx(0.05)  # never above the request's own target
    own = QualityTarget(0.7, "absolute")
    assert pc.step(PaceState(10.0, 1.0, 250, 0.5), own).index == pc.index_for(own)
    spent = pc.step(PaceState(10.0, 12.0, 250, 0.5, level=0.03), base)
    assert spent.index == 0 and spent.allowance_usd == 0.0  # at or over the amount: the cheapest knob at once
    floored = PacingController(TABLE, QualityTarget(0.8, "absolute")).step(PaceState(10.0, 12.0, 250, 0.5), base)
    assert floored.target.value >= 0.8 - 1e-9
    doubled = pc.step(PaceState(10.0, 5.0, 250, 0.5, gain=2.0), base)  # traffic costs twice the table's
    assert doubled.level == pytest.approx(0.01)
    rolling = pc.step(PaceState(10.0, 15.0, 250, 1.0, rolling=True), base)
    assert rolling.allowance_usd == pytest.approx(5.0 / 250)


def test_the_level_moves_smoothly_and_faster_as_the_window_ends() -> None:
    pc = PacingController(TABLE, smoothing_requests=100, seed=0)
    base = QualityTarget(1.0)
    early = pc.step(PaceState(10.0, 5.0, 250, 0.5, level=0.01), base)  # 250 more calls expected: lag 250 / 4 = 62.5
    assert early.level == pytest.approx(0.01 + (0.02 - 0.01) / 62.5)
    late = pc.step(PaceState(10.0, 9.98, 1000, 0.999, level=0.01), base)  # one more call expected: no lag left
    assert late.allowance_usd == pytest.approx(0.02, rel=0.01) and late.level == pytest.approx(late.allowance_usd)
    mid = pc.step(PaceState(10.0, 1.0, 1000, 0.1, level=0.01), base)  # 9,000 more calls: the full lag, 100
    assert mid.level == pytest.approx(0.01 + (9.0 / 9000 - 0.01) / 100)
    high = pc.step(PaceState(10.0, 0.0, 1000, 0.1, level=0.04), QualityTarget(0.7, "absolute"))
    assert high.level == pytest.approx(pc.cost[pc.index_for(QualityTarget(0.7, "absolute"))])  # no wind-up above
    with pytest.raises(ValueError, match="smoothing_requests"):
        PacingController(TABLE, smoothing_requests=0)


def test_pacing_mixes_the_knobs_on_the_concave_hull_to_spend_the_level() -> None:
    # a table with a knob below the hull (2: dearer than 1 for little more quality) and a flat stretch (4)
    table = KnobTable(rule="utility", knobs=(5.0, 4.0, 3.0, 2.0, 1.0, 0.0), quality=(0.5, 0.7, 0.71, 0.8, 0.8, 0.9),
                      cost=(0.001, 0.002, 0.004, 0.005, 0.006, 0.01), best_single_model="m", best_single_quality=0.9,
                      best_single_cost=0.01)
    pc = PacingController(table, seed=1)
    assert pc.hull(0, 5) == (0, 1, 3, 5)
    assert pc.hull(0, 2) == (0, 1, 2) and pc.hull(2, 5) == (2, 3, 5)
    state = PaceState(10.0, 10.0 - 0.0035 * 250, 250, 0.5, level=0.0035)  # on plan: the allowance is the level
    steps = [pc.step(state, QualityTarget(1.0)) for _ in range(4000)]
    assert {s.index for s in steps} == {1, 3}  # the neighbours on the hull, never 2
    assert np.mean([s.table_cost_usd for s in steps]) == pytest.approx(0.0035, rel=0.03)


def test_gain_tracker_shrinks_towards_one() -> None:
    g = GainTracker(prior_calls=10)
    assert g.gain == 1.0
    g.add(0.01, 0.02)
    assert 1.0 < g.gain < 1.2
    for _ in range(1000):
        g.add(0.01, 0.02)
    assert g.gain == pytest.approx(2.0, rel=0.02)


def _status(enforcement: str, spent: float, **kw: object) -> BudgetStatus:
    spec = parse_budget({"name": enforcement, "tenant": "t", "amount_usd": 10, "window": "monthly",
                         "enforcement": enforcement, **kw})
    now = datetime(2026, 6, 16, tzinfo=UTC)
    return BudgetStatus(spec, window_at("monthly", False, spec.tz, now), spent, 300, now)


def test_enforcements_combine() -> None:
    ctx = Context(QualityTarget(1.0), lambda spec: PacingController(TABLE))
    assert combine([_status("alert", 50)], ctx).adjustments == ()
    assert combine([_status("block", 9.99)], ctx).blocked_by is None
    v = combine([_status("block", 10.0), _status("downgrade", 9, ceiling_usd=0.002), _status("pace", 9)], ctx)
    assert v.blocked_by is not None and v.blocked_by.spec.name == "block"
    assert v.max_cost_usd == 0.002 and v.target is not None and v.target.value < 0.9
    assert len(v.notes) == 3
    assert combine([_status("downgrade", 7, ceiling_usd=0.002)], ctx).max_cost_usd is None  # below downgrade_at
    register("never", lambda status, ctx: None)
    assert "never" in names()


def test_alerts_thresholds_once_and_forecast() -> None:
    st = _status("alert", 8.5)  # half the month gone, 85% spent: will exceed around day 18
    due = alerts.due(st)
    assert [a.key for a in due] == ["threshold:0.5", "threshold:0.8", "forecast"]
    fc = next(a for a in due if a.key == "forecast")
    assert fc.exceeds_at is not None and fc.exceeds_at.day in (17, 18) and fc.forecast_usd == pytest.approx(17.0, rel=0.05)
    assert [a.key for a in alerts.due(st, fired={"threshold:0.5", "threshold:0.8", "forecast"})] == []
    assert alerts.due(_status("alert", 4.0)) == []  # on plan
    assert alerts.due(_status("alert", 1.0, forecast=False, thresholds=[0.05]))[0].key == "threshold:0.05"
