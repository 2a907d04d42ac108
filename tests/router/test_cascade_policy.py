"""The cascade's pure decisions: the walk, the vectorised threshold sweep (equal to walking), the
frontier, operating points for targets, and the agreement features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmroute.router.agreement import AGREEMENT_FEATURES, agreement_features, normalise_answer
from llmroute.router.cascade_policy import (
    CascadeRule,
    CascadeWalk,
    OperatingPoint,
    OperatingPoints,
    combine_confidence,
    pareto_frontier,
)
from llmroute.router.cascade_search import THRESHOLD_GRID, chain_for, sweep_thresholds
from llmroute.router.decision import Candidate, QualityTarget


def _cands(probs: dict[str, float], costs: dict[str, float]) -> dict[str, Candidate]:
    return {m: Candidate(m, probs[m], costs[m], True, None) for m in probs}


CANDS = _cands({"cheap": 0.5, "mid": 0.7, "top": 0.9, "odd": 0.4}, {"cheap": 1.0, "mid": 2.0, "top": 5.0, "odd": 3.0})


def test_walk_accepts_escalates_and_delivers_the_most_confident() -> None:
    walk = CascadeWalk(CascadeRule((0.6, 0.8), max_attempts=3), CANDS, "cheap")
    assert walk.next() == "cheap" and not walk.is_last("cheap")
    assert walk.answered("cheap", 0.55) == "confidence 0.550 < 0.600"
    assert walk.next() == "mid"
    assert walk.answered("mid", 0.5) is not None  # 0.5 < 0.8: escalate again
    assert walk.next() == "top" and walk.is_last("top")
    walk.answered("top", 0.52)
    assert walk.next() is None
    assert walk.delivered == 0  # 0.55 is the highest confidence
    assert walk.escalation_reasons()[-1] is None and all(walk.escalation_reasons()[:2])


def test_walk_stops_on_accept_and_ties_go_to_the_latest() -> None:
    walk = CascadeWalk(CascadeRule((0.9, 0.5)), CANDS, "cheap")
    walk.answered("cheap", 0.6)
    assert walk.answered(walk.next() or "", 0.6) is None  # mid accepted at 0.6 >= 0.5
    assert walk.next() is None and walk.delivered == 1


def test_walk_after_failure_tries_the_most_probable_left_and_fixed_chains() -> None:
    walk = CascadeWalk(CascadeRule((0.5,)), CANDS, "top")
    walk.failed("top", "timeout")
    assert walk.next() == "mid"
    walk.failed("mid", None)
    assert walk.next() == "cheap" and walk.steps[-1].escalated_because == "error"
    walk.failed("cheap", "http_500")
    assert walk.next() is None and walk.delivered is None  # max_attempts 3 reached
    fixed = CascadeWalk(CascadeRule((0.5,), chain=("odd", "top")), CANDS, "ignored")
    assert fixed.next() == "odd"
    fixed.answered("odd", 0.1)
    assert fixed.next() == "top" and fixed.is_last("top")


def test_rule_confidence_weights() -> None:
    assert combine_confidence(0.6, 0.9, None, 2.0) == pytest.approx((0.6 + 1.8) / 3)
    assert CascadeRule(scorer_weight=1.0, router_weight=0.0).confidence(0.2, 0.7) == pytest.approx(0.7)
    assert combine_confidence(0.3, None, None, 1.0, 1.0, 0.0) == 0.3  # nothing weighed: the router probability
    with pytest.raises(ValueError, match="max_attempts"):
        CascadeRule(max_attempts=0)


def test_sweep_equals_walking_every_prompt() -> None:
    rng = np.random.default_rng(3)
    models = [f"m{j}" for j in range(5)]
    n = 60
    probs = rng.random((n, 5))
    cost = np.tile(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), (n, 1)) * rng.uniform(0.5, 1.5, (n, 1))
    quality = (rng.random((n, 5)) < 0.6).astype(float)
    conf_of = rng.random((n, 5))  # the confidence an answer of model j gets on prompt i
    rule = CascadeRule((1.0,), 3)
    chains = []
    for i in range(n):
        cands = {m: Candidate(m, probs[i, j], cost[i, j], True, None) for j, m in enumerate(models)}
        chains.append((cands, chain_for(rule, cands, models[int(rng.integers(5))])))
    S = 3
    conf, q, c = np.zeros((n, S)), np.zeros((n, S)), np.zeros((n, S))
    valid = np.zeros((n, S), dtype=bool)
    for i, (_, ch) in enumerate(chains):
        for s, m in enumerate(ch):
            j = models.index(m)
            conf[i, s], q[i, s], c[i, s], valid[i, s] = conf_of[i, j], quality[i, j], cost[i, j], True
    assert valid[:, 1].any() and (~valid[:, 1]).any()  # some chains end early
    Q, C = sweep_thresholds(conf, q, c, valid)
    for a, b in [(0, 0), (10, 30), (20, 20), (35, 5), (40, 40)]:
        walked_q, walked_c = [], []
        for i, (cands, ch) in enumerate(chains):
            walk = CascadeWalk(CascadeRule((THRESHOLD_GRID[a], THRESHOLD_GRID[b]), 3), cands, ch[0])
            paid = []
            while (m := walk.next()) is not None:
                walk.answered(m, conf_of[i, models.index(m)])
                paid.append(cost[i, models.index(m)])
            d = walk.steps[walk.delivered or 0].model
            walked_q.append(quality[i, models.index(d)])
            walked_c.append(sum(paid))
        assert Q[a, b] == pytest.approx(np.mean(walked_q))
        assert C[a, b] == pytest.approx(np.mean(walked_c))


def test_pareto_frontier_rises() -> None:
    c = [3.0, 1.0, 2.0, 2.0, 4.0, 0.5]
    q = [0.9, 0.5, 0.7, 0.6, 0.85, 0.5]
    f = pareto_frontier(c, q)
    assert f == [5, 2, 0]
    assert all(q[a] < q[b] and c[a] <= c[b] for a, b in zip(f, f[1:]))


def _point(q: float, c: float) -> OperatingPoint:
    return OperatingPoint("utility", c, 2.0, 1.0, (0.5, 0.5), 3, q, c)


def test_operating_points_targets_are_monotone_and_round_trip(tmp_path: Path) -> None:
    ops = OperatingPoints((_point(0.7, 1.0), _point(0.8, 2.0), _point(0.9, 4.0)), (), "best", 0.85)
    costs = [ops.point_for(QualityTarget(t, "relative"))[0].validation_cost for t in np.linspace(0.5, 1.1, 25)]
    assert costs == sorted(costs)
    p, ok = ops.point_for(QualityTarget(0.95, "relative"))  # goal 0.8075 -> the 0.9 point
    assert ok and p.validation_quality == 0.9
    p, ok = ops.point_for(QualityTarget(0.99, "absolute"))
    assert not ok and p.validation_quality == 0.9
    back = OperatingPoints.load(ops.save(tmp_path / "ops.json"))
    assert back == ops
    (tmp_path / "bad.json").write_text('{"format_version": 99}')
    with pytest.raises(ValueError, match="unknown operating points format"):
        OperatingPoints.load(tmp_path / "bad.json")


def test_agreement_features() -> None:
    f = agreement_features(
        ["B", " (b). ", "C", "```python\ndef f(x):\n    return x + 1\n```", "A"],
        [(), ("A", "B"), ("C", "D"), ("Here:\n```python\ndef f(x):\n    return x + 1\n```",), ("A", "A")],
    )
    col = {n: k for k, n in enumerate(AGREEMENT_FEATURES)}
    assert f[0, col["n_earlier"]] == 0 and np.isnan(f[0, col["agree_share"]])
    assert f[1, col["agree_share"]] == 0.5 and f[1, col["agree_last"]] == 1.0
    assert f[2, col["agree_last"]] == 0.0 and f[2, col["earlier_agree_among_themselves"]] == 0.0
    assert f[3, col["jaccard_max"]] == 1.0  # the same code, different prose around it
    assert f[4, col["earlier_agree_among_themselves"]] == 1.0 and f[4, col["agree_share"]] == 1.0
    assert normalise_answer("Answer: B") == "b"
    with pytest.raises(ValueError, match="same length"):
        agreement_features(["a"], [])


def test_jump_after_escalates_straight_to_the_most_probable_model() -> None:
    cands = _cands({"a": 0.3, "b": 0.5, "c": 0.6, "d": 0.9}, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 9.0})
    climb = chain_for(CascadeRule((1.0,), 3), cands, "a")
    jump1 = chain_for(CascadeRule((1.0,), 3, jump_after=1), cands, "a")
    jump2 = chain_for(CascadeRule((1.0,), 3, jump_after=2), cands, "a")
    assert climb == ("a", "b", "c") and jump1 == ("a", "d", "c") and jump2 == ("a", "b", "d")
    walk = CascadeWalk(CascadeRule((1.0,), 2, jump_after=1), cands, "a")
    assert not walk.is_last("a")
    walk.answered("a", 0.0)
    assert walk.next() == "d" and walk.is_last("d")


def test_agreement_weighs_the_earlier_models_prior() -> None:
    f = agreement_features(["B", "B"], [("B", "A"), ("A",)], [(0.9, 0.4), (float("nan"),)])
    col = {n: k for k, n in enumerate(AGREEMENT_FEATURES)}
    assert f[0, col["agree_prior_max"]] == pytest.approx(0.9) and f[0, col["disagree_prior_max"]] == pytest.approx(0.4)
    assert f[1, col["agree_prior_max"]] == 0.0 and f[1, col["disagree_prior_max"]] == 0.0  # unknown prior
