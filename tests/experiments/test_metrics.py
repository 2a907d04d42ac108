"""Hand-computed cases for the cost-quality measures and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmroute.experiments.metrics import (
    BootstrapCI,
    aiq,
    apgr,
    bootstrap_ci,
    bootstrap_diff_ci,
    cost_at_quality,
    cost_ratio,
    cpt,
    false_cheap_rate,
    miss_rate,
    pgr,
    quality_at_cost,
    target_attainment,
    unneeded_escalation_rate,
    upper_hull,
)

# --- upper hull -------------------------------------------------------------------------------


def test_hull_drops_dominated_and_points_under_the_chord() -> None:
    costs = [2.5, 1.0, 2.0, 3.0, 4.0]
    quals = [0.4, 0.5, 0.6, 0.9, 0.85]
    hc, hq = upper_hull(costs, quals)
    # (2.5, .4) and (4, .85) are dominated; (2, .6) lies under the chord (1,.5)-(3,.9) at .7.
    np.testing.assert_allclose(hc, [1.0, 3.0])
    np.testing.assert_allclose(hq, [0.5, 0.9])


def test_hull_keeps_concave_points_and_best_of_equal_costs() -> None:
    hc, hq = upper_hull([1.0, 1.0, 2.0, 3.0], [0.3, 0.5, 0.8, 0.9])
    np.testing.assert_allclose(hc, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(hq, [0.5, 0.8, 0.9])


def test_hull_drops_collinear_middle_point_and_handles_one_point() -> None:
    hc, hq = upper_hull([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(hc, [1.0, 3.0])
    hc, hq = upper_hull([0.7], [0.4])
    assert hc.tolist() == [0.7] and hq.tolist() == [0.4]


def test_hull_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        upper_hull([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="at least one"):
        upper_hull([], [])
    with pytest.raises(ValueError, match="finite"):
        upper_hull([1.0, float("nan")], [0.5, 0.6])


# --- AIQ --------------------------------------------------------------------------------------


def test_aiq_two_points_is_mean_of_segment() -> None:
    assert aiq([1.0, 3.0], [0.5, 0.9], 1.0, 3.0) == pytest.approx(0.7)


def test_aiq_extends_flat_to_the_right() -> None:
    # [1,3]: area 1.4; [3,5]: 0.9 * 2 = 1.8; (1.4 + 1.8) / 4 = 0.8
    assert aiq([1.0, 3.0], [0.5, 0.9], 1.0, 5.0) == pytest.approx(0.8)


def test_aiq_concave_curve() -> None:
    # area 0.4 + 0.9 = 1.3 over a range of 2
    assert aiq([0.0, 1.0, 2.0], [0.0, 0.8, 1.0], 0.0, 2.0) == pytest.approx(0.65)


def test_aiq_triangle_point_under_hull_adds_nothing() -> None:
    with_point = aiq([0.0, 1.0, 2.0], [0.0, 0.2, 1.0], 0.0, 2.0)
    assert with_point == pytest.approx(0.5)
    assert with_point == pytest.approx(aiq([0.0, 2.0], [0.0, 1.0], 0.0, 2.0))


def test_aiq_left_of_cheapest_point_uses_floor() -> None:
    # no floor: [1,2] rises 0 -> 0.8 (area 0.4), [2,4] area 1.8: 2.2 / 3
    assert aiq([2.0, 4.0], [0.8, 1.0], 1.0, 4.0) == pytest.approx(2.2 / 3)
    # floor 0.6: [1,2] area 0.7: 2.5 / 3
    assert aiq([2.0, 4.0], [0.8, 1.0], 1.0, 4.0, q_floor=0.6) == pytest.approx(2.5 / 3)


def test_aiq_router_cheaper_than_c_min_is_clipped() -> None:
    # hull at c=1 is 0.6; [1,1.5] area 0.35, [1.5,2] area 0.4
    assert aiq([0.5, 1.5], [0.4, 0.8], 1.0, 2.0) == pytest.approx(0.75)


def test_aiq_single_point_beyond_range() -> None:
    # line (1, 0) -> (5, 1) read on [1, 3]: mean of 0 and 0.5
    assert aiq([5.0], [1.0], 1.0, 3.0) == pytest.approx(0.25)


def test_aiq_rejects_empty_range() -> None:
    with pytest.raises(ValueError, match="c_min < c_max"):
        aiq([1.0], [0.5], 2.0, 2.0)


# --- cost at parity, quality at equal cost ----------------------------------------------------


def test_cost_at_quality() -> None:
    costs, quals = [3.0, 1.0, 2.0], [0.9, 0.5, 0.7]
    assert cost_at_quality(costs, quals, 0.7) == 2.0
    assert cost_at_quality(costs, quals, 0.6) == 2.0
    assert cost_at_quality(costs, quals, 0.4) == 1.0
    assert cost_at_quality(costs, quals, 0.95) is None


def test_cost_at_quality_tolerates_rounding() -> None:
    assert cost_at_quality([1.0], [0.1 + 0.2], 0.3) == 1.0


def test_cost_ratio() -> None:
    assert cost_ratio(3.1, 1.0) == pytest.approx(3.1)
    assert cost_ratio(3.1, None) is None
    assert cost_ratio(3.1, 0.0) == math.inf
    with pytest.raises(ValueError, match="non-negative"):
        cost_ratio(-1.0, 1.0)


def test_quality_at_cost() -> None:
    costs, quals = [3.0, 1.0, 2.0], [0.9, 0.5, 0.7]
    assert quality_at_cost(costs, quals, 2.5) == 0.7
    assert quality_at_cost(costs, quals, 2.0) == 0.7
    assert quality_at_cost(costs, quals, 10.0) == 0.9
    assert quality_at_cost(costs, quals, 0.5) is None


# --- PGR, APGR, CPT ---------------------------------------------------------------------------


def test_pgr_scalar_and_array() -> None:
    assert pgr(0.7, 0.5, 0.9) == pytest.approx(0.5)
    np.testing.assert_allclose(pgr(np.array([0.5, 0.9]), 0.5, 0.9), [0.0, 1.0])
    with pytest.raises(ValueError, match="undefined"):
        pgr(0.7, 0.5, 0.5)


def test_apgr_of_random_line_is_half() -> None:
    shares = np.linspace(0, 1, 11)
    assert apgr(shares, 0.5 + 0.4 * shares, 0.5, 0.9) == pytest.approx(0.5)
    # interior points only: the endpoints (0, 0) and (1, 1) are added
    inner = np.array([0.2, 0.8, 0.5])
    assert apgr(inner, 0.5 + 0.4 * inner, 0.5, 0.9) == pytest.approx(0.5)


def test_apgr_merges_points_at_the_same_share() -> None:
    assert apgr([0.5, 0.5], [0.4, 0.6], 0.0, 1.0) == pytest.approx(0.5)


def _simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weak = (rng.random(n) < 0.55).astype(float)
    strong = (rng.random(n) < 0.85).astype(float)
    return weak, strong


def test_apgr_and_cpt_of_simulated_random_router() -> None:
    weak, strong = _simulate(10_000, seed=1)
    rng = np.random.default_rng(2)
    shares, quals = [], []
    for s in np.linspace(0, 1, 21):
        to_strong = rng.random(weak.size) < s
        shares.append(to_strong.mean())
        quals.append(np.where(to_strong, strong, weak).mean())
    q_weak, q_strong = weak.mean(), strong.mean()
    assert apgr(shares, quals, q_weak, q_strong) == pytest.approx(0.5, abs=0.02)
    share_50 = cpt(shares, quals, q_weak, q_strong, 0.5)
    assert share_50 == pytest.approx(0.5, abs=0.05)


def test_apgr_and_cpt_of_perfect_router() -> None:
    # weak fails prompts 0 and 1; strong gets all right. q_weak = 0.5, q_strong = 1.
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.ones(4)
    shares, quals = [], []
    for k in range(5):  # send the k prompts the weak model fails first
        routed = np.arange(4) < k
        shares.append(k / 4)
        quals.append(np.where(routed, strong, weak).mean())
    # curve (0,0) (.25,.5) (.5,1) (.75,1) (1,1): area .0625 + .1875 + .5
    assert apgr(shares, quals, 0.5, 1.0) == pytest.approx(0.75)
    assert cpt(shares, quals, 0.5, 1.0, 0.5) == pytest.approx(0.25)
    assert cpt(shares, quals, 0.5, 1.0, 0.8) == pytest.approx(0.4)
    assert cpt(shares, quals, 0.5, 1.0, 1.0) == pytest.approx(0.5)
    assert cpt(shares, quals, 0.5, 1.0, 0.0) == 0.0


def test_cpt_of_random_line_and_unreached() -> None:
    shares = np.linspace(0, 1, 5)
    for x in (0.2, 0.5, 0.8):
        assert cpt(shares, 0.5 + 0.4 * shares, 0.5, 0.9, x) == pytest.approx(x)
    # a point measured at share 1 overrides the (1, 1) endpoint
    assert cpt([0.0, 0.5, 1.0], [0.0, 0.6, 0.9], 0.0, 1.0, 0.95) is None


def test_apgr_rejects_shares_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        apgr([1.2], [0.5], 0.0, 1.0)


# --- per-prompt rates, attainment -------------------------------------------------------------


def test_false_cheap_rate_hand_case() -> None:
    quality = np.array(
        [
            [0, 1, 1],  # chose 0, missed, dearer model 1 meets it -> counts
            [0, 0, 0],  # chose 0, missed, nobody meets it -> no
            [1, 0, 0],  # chose 2 (dearest), missed; only a cheaper one meets it -> no
            [0, 1, 0],  # chose 1, met -> no
            [0, 0, 1],  # chose 1, missed, dearer model 2 meets it -> counts
            [1, 0, 0],  # costs reversed: chose 1 (cost 2), model 0 costs 3 and meets it -> counts
        ],
        dtype=float,
    )
    costs = np.array([[1, 2, 3]] * 5 + [[3, 2, 1]], dtype=float)
    chosen = np.array([0, 0, 2, 1, 1, 1])
    assert false_cheap_rate(quality, costs, chosen, target=1.0) == pytest.approx(0.5)
    assert miss_rate(quality[np.arange(6), chosen], target=1.0) == pytest.approx(5 / 6)


def test_false_cheap_rate_unknown_quality_never_rescues() -> None:
    quality = np.array([[0.0, np.nan]])
    costs = np.array([[1.0, 2.0]])
    assert false_cheap_rate(quality, costs, np.array([0])) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        false_cheap_rate(quality, costs, np.array([1]))
    with pytest.raises(ValueError, match="indices"):
        false_cheap_rate(quality, costs, np.array([2]))


def test_unneeded_escalation_rate() -> None:
    first = np.array([1.0, 1.0, 0.0, 0.0])
    escalated = np.array([True, False, True, False])
    assert unneeded_escalation_rate(first, escalated) == pytest.approx(0.25)


def test_target_attainment() -> None:
    short = target_attainment(0.83, 0.85)
    assert short["met"] is False
    assert short["shortfall"] == pytest.approx(0.02)
    ok = target_attainment(0.9, 0.85)
    assert ok == {"realised": 0.9, "target": 0.85, "met": True, "shortfall": 0.0}


# --- bootstrap --------------------------------------------------------------------------------


def _router_table(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt quality and cost of a synthetic router at 5 knob values."""
    rng = np.random.default_rng(seed)
    p_correct = np.linspace(0.55, 0.9, 5) - shift
    quality = (rng.random((n, 5)) < p_correct).astype(float)
    cost = rng.gamma(2.0, 1.0, size=(n, 5)) * np.linspace(0.001, 0.01, 5)
    return quality, cost


def _aiq_stat(c: np.ndarray, q: np.ndarray) -> float:
    return aiq(c, q, 0.002, 0.02)


def test_bootstrap_ci_contains_point_and_shrinks_with_n() -> None:
    widths = []
    for n in (200, 5000):
        quality, cost = _router_table(n, seed=n)
        res = bootstrap_ci(quality, cost, _aiq_stat, n_boot=400, seed=0)
        point, lo, hi = res
        assert point is not None and lo is not None and hi is not None
        assert lo <= point <= hi
        assert res.none_share == 0.0
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # about sqrt(25) = 5 times narrower


def test_bootstrap_ci_matches_normal_theory_for_a_mean() -> None:
    rng = np.random.default_rng(3)
    quality = (rng.random(2000) < 0.6).astype(float)
    cost = np.ones(2000)
    res = bootstrap_ci(quality, cost, lambda c, q: float(q[0]), n_boot=2000, seed=1)
    assert res.lo is not None and res.hi is not None
    se = quality.std() / np.sqrt(quality.size)
    assert res.hi - res.lo == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_ci_is_reproducible() -> None:
    quality, cost = _router_table(300, seed=5)
    a = bootstrap_ci(quality, cost, _aiq_stat, n_boot=200, seed=7)
    b = bootstrap_ci(quality, cost, _aiq_stat, n_boot=200, seed=7)
    assert a == b
    assert isinstance(a, BootstrapCI)


def test_bootstrap_ci_reports_undefined_resamples() -> None:
    quality = np.array([1.0] * 50 + [0.0] * 50)
    cost = np.ones(100)
    res = bootstrap_ci(quality, cost, lambda c, q: cost_at_quality(c, q, 0.5), n_boot=500, seed=0)
    assert res.point == 1.0
    assert 0.3 < res.none_share < 0.7
    assert res.lo == 1.0 and res.hi == 1.0
    never = bootstrap_ci(quality, cost, lambda c, q: None, n_boot=50)
    assert never.none_share == 1.0 and never.lo is None and never.hi is None


def test_bootstrap_diff_of_identical_routers_is_zero() -> None:
    quality, cost = _router_table(400, seed=11)
    res = bootstrap_diff_ci(quality, cost, quality, cost, _aiq_stat, n_boot=300)
    point, lo, hi = res
    assert point == 0.0 and lo is not None and hi is not None
    assert lo <= 0.0 <= hi


def test_bootstrap_diff_detects_a_better_router() -> None:
    qa, ca = _router_table(2000, seed=12)
    # B answers each prompt like A but misses 10% of the prompts A got right
    rng = np.random.default_rng(13)
    qb = qa * (rng.random(qa.shape) >= 0.1)
    res = bootstrap_diff_ci(qa, ca, qb, ca, _aiq_stat, n_boot=300, seed=0)
    assert res.point is not None and res.lo is not None and res.hi is not None
    assert 0.0 < res.lo <= res.point <= res.hi


def test_bootstrap_rejects_mismatched_inputs() -> None:
    quality, cost = _router_table(10, seed=0)
    with pytest.raises(ValueError, match="same shape"):
        bootstrap_ci(quality, cost[:, :3], _aiq_stat)
    with pytest.raises(ValueError, match="same prompts"):
        bootstrap_diff_ci(quality, cost, quality[:5], cost[:5], _aiq_stat)
