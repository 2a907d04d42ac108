"""Decision rules: threshold and utility, masks, and monotonicity in the knob."""

from __future__ import annotations

import numpy as np
import pytest

from llmroute.router import policy

P = np.array([[0.9, 0.6, 0.3]])
C = np.array([[3.0, 2.0, 1.0]])
ALL = np.ones_like(P, dtype=bool)


@pytest.mark.parametrize(("tau", "want"), [(0.0, 2), (0.2, 2), (0.3, 2), (0.5, 1), (0.6, 1), (0.61, 0), (0.9, 0)])
def test_threshold_picks_cheapest_model_clearing_tau(tau: float, want: int) -> None:
    idx, cleared = policy.choose("threshold", P, C, ALL, tau)
    assert idx.tolist() == [want] and cleared.tolist() == [True]


def test_threshold_falls_back_to_most_likely_model_when_none_clears() -> None:
    # the most likely model is not the most expensive one here
    p = np.array([[0.2, 0.7, 0.5]])
    idx, cleared = policy.choose("threshold", p, C, ALL, 0.95)
    assert idx.tolist() == [1] and cleared.tolist() == [False]


@pytest.mark.parametrize(("lam", "want"), [(0.0, 0), (0.1, 0), (0.2, 1), (0.4, 1), (0.5, 2), (10.0, 2)])
def test_utility_maximises_p_minus_lambda_cost(lam: float, want: int) -> None:
    p = np.array([[0.9, 0.75, 0.3]])
    # p - lam * c at lam=.1: .6 .55 .2 | lam=.2: .3 .35 .1 | lam=.4: -.3 -.05 -.1 | lam=.5: -.6 -.25 -.2
    idx, cleared = policy.choose("utility", p, C, ALL, lam)
    assert idx.tolist() == [want] and cleared.tolist() == [True]


def test_masks_are_respected() -> None:
    mask = np.array([[True, False, True]])
    idx, cleared = policy.choose("threshold", P, C, mask, 0.5)
    assert idx.tolist() == [0] and cleared.tolist() == [True]  # model 1 would clear, but is masked
    # fallback: the best *eligible* probability, not the masked best
    mask = np.array([[False, True, True]])
    idx, cleared = policy.choose("threshold", P, C, mask, 0.95)
    assert idx.tolist() == [1] and cleared.tolist() == [False]
    # utility never picks a masked model, even with the best utility
    idx, _ = policy.choose("utility", P, C, np.array([[False, True, True]]), 0.0)
    assert idx.tolist() == [1]
    # a masked model is not "cheapest" for the threshold rule either
    idx, _ = policy.choose("threshold", P, C, np.array([[True, True, False]]), 0.0)
    assert idx.tolist() == [1]


@pytest.mark.parametrize("rule", policy.rule_names())
def test_all_masked_row_gets_minus_one(rule: str) -> None:
    p = np.array([[0.9, 0.6, 0.3], [0.1, 0.8, 0.4]])
    c = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    mask = np.array([[False, False, False], [True, True, True]])
    idx, cleared = policy.choose(rule, p, c, mask, 0.5 if rule == "threshold" else 0.01)
    assert idx[0] == -1 and not cleared[0]
    assert idx[1] == 1 and cleared[1]


def test_unknown_rule_raises() -> None:
    with pytest.raises(ValueError, match="unknown rule 'greedy'"):
        policy.choose("greedy", P, C, ALL, 0.5)
    with pytest.raises(ValueError, match="unknown rule"):
        policy.knob_grid("greedy")


def test_grids_are_ordered_from_cheap_to_expensive_behaviour() -> None:
    t = policy.knob_grid("threshold")
    u = policy.knob_grid("utility")
    assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)
    assert u[-1] == 0.0 and np.all(np.diff(u) < 0)


def _random_problem(seed: int, n: int = 300, m: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, m))
    costs = rng.lognormal(-6, 1.5, (n, m))
    mask = rng.random((n, m)) < 0.75
    mask[np.arange(n), rng.integers(0, m, n)] = True  # at least one eligible model per row
    return probs, costs, mask


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rule", policy.rule_names())
def test_cost_of_choice_is_monotone_in_the_knob(rule: str, seed: int) -> None:
    """Threshold: raising tau; utility: lowering lam. The chosen model never gets cheaper."""
    probs, costs, mask = _random_problem(seed)
    choices = policy.sweep(rule, probs, costs, mask)
    assert choices.shape == (len(probs), len(policy.knob_grid(rule)))
    assert np.all(choices >= 0)
    assert np.all(mask[np.arange(len(probs))[:, None], choices]), "a masked model was chosen"
    chosen_cost = np.take_along_axis(costs, choices, axis=1)
    assert np.all(np.diff(chosen_cost, axis=1) >= 0)
    # at the cheap end of the grid the threshold rule takes the cheapest eligible model
    if rule == "threshold":
        cheapest = np.argmin(np.where(mask, costs, np.inf), axis=1)
        assert np.array_equal(choices[:, 0], cheapest)
    # at the expensive end both rules take the most likely eligible model
    best = np.argmax(np.where(mask, probs, -np.inf), axis=1)
    assert np.array_equal(choices[:, -1], best)


@pytest.mark.parametrize("rule", policy.rule_names())
def test_sweep_matches_choose_and_defaults_to_all_eligible(rule: str) -> None:
    probs, costs, _ = _random_problem(7, n=40, m=4)
    grid = policy.knob_grid(rule)
    swept = policy.sweep(rule, probs, costs)
    for k in (0, len(grid) // 2, len(grid) - 1):
        idx, _ = policy.choose(rule, probs, costs, np.ones_like(probs, dtype=bool), float(grid[k]))
        assert np.array_equal(swept[:, k], idx)


def test_threshold_ranking_is_cleared_models_cheapest_first_then_the_rest_by_probability() -> None:
    p = np.array([0.9, 0.6, 0.7, 0.3, 0.5, 0.95])
    c = np.array([5.0, 1.0, 2.0, 0.1, 0.5, 0.2])
    mask = np.array([True, True, True, True, True, False])  # the best and cheap model 5 is not eligible
    assert policy.ranking("threshold", p, c, mask, 0.55) == [1, 2, 0, 4, 3]
    assert policy.ranking("threshold", p, c, mask, 0.55)[0] == policy.choose("threshold", p[None], c[None], mask[None], 0.55)[0][0]
    assert policy.ranking("threshold", p, c, mask, 0.99) == [0, 2, 1, 4, 3]  # none clears: by probability
    assert policy.ranking("threshold", p, c, mask, 0.55, first=3) == [3, 1, 2, 0, 4]
    assert policy.ranking("threshold", p, c, mask, 0.55, first=5) == [1, 2, 0, 4, 3]  # an ineligible first is ignored


def test_utility_ranking_is_by_decreasing_utility() -> None:
    p = np.array([0.9, 0.6, 0.7, 0.3])
    c = np.array([0.05, 0.01, 0.02, 0.001])
    utility = p - 5.0 * c  # 0.65, 0.55, 0.60, 0.295
    assert policy.ranking("utility", p, c, np.ones(4, dtype=bool), 5.0) == list(np.argsort(-utility))
    assert policy.ranking("utility", p, c, np.array([False, True, True, True]), 5.0) == [2, 1, 3]
    assert policy.ranking("utility", p, c, np.zeros(4, dtype=bool), 5.0) == []
