"""The statistics on generated data: a known effect is found, no effect gives ~5% false positives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sst

from llmroute.abtest import stats

N_EXPERIMENTS = 400
# two-sided 99.9% binomial band around 5% false positives in 400 experiments: about 1.6% to 9.2%
LO, HI = sst.binom.ppf([0.0005, 0.9995], N_EXPERIMENTS, 0.05) / N_EXPERIMENTS


def test_welch_finds_a_known_difference_in_means() -> None:
    rng = np.random.default_rng(1)
    control = rng.normal(0.70, 0.3, 800)
    treatment = rng.normal(0.78, 0.5, 600)  # unequal variances and sizes
    c = stats.welch(treatment, control)
    assert c.significant and c.p_value is not None and c.p_value < 1e-3
    assert c.lo is not None and c.hi is not None and c.lo < 0.08 < c.hi and c.lo > 0
    ref = sst.ttest_ind(treatment, control, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (c.lo, c.hi) == pytest.approx((ci.low, ci.high))


def test_two_proportions_finds_a_known_difference() -> None:
    c = stats.two_proportions(560, 1000, 500, 1000)  # 56% vs 50%
    assert c.diff == pytest.approx(0.06)
    assert c.p_value is not None and 0.005 < c.p_value < 0.01  # z = 2.69
    assert c.lo is not None and c.lo > 0
    # the textbook z statistic by hand
    p = 0.53
    z = 0.06 / math.sqrt(p * (1 - p) * (2 / 1000))
    assert c.p_value == pytest.approx(2 * sst.norm.sf(z))


def test_bootstrap_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(2)
    t, c = rng.exponential(1.2, 500), rng.exponential(1.0, 500)
    b = stats.bootstrap_mean_diff(t, c, n_boot=2000, seed=0)
    w = stats.welch(t, c)
    assert b.diff == pytest.approx(w.diff)
    assert b.lo is not None and b.hi is not None and w.lo is not None and w.hi is not None
    assert abs(b.lo - w.lo) < 0.05 and abs(b.hi - w.hi) < 0.05
    assert b.lo > 0 and b.significant


@pytest.mark.parametrize("test", ["welch", pytest.param("bootstrap", marks=pytest.mark.slow), "two_proportions"])
def test_false_positive_rate_without_an_effect_is_about_five_percent(test: str) -> None:
    rng = np.random.default_rng({"welch": 10, "bootstrap": 11, "two_proportions": 12}[test])
    hits = 0
    for _ in range(N_EXPERIMENTS):
        if test == "two_proportions":
            a, b = rng.binomial(1, 0.3, 300), rng.binomial(1, 0.3, 250)
            c = stats.two_proportions(int(a.sum()), a.size, int(b.sum()), b.size)
        elif test == "welch":
            c = stats.welch(rng.normal(0.6, 0.3, 200), rng.normal(0.6, 0.3, 150))
        else:
            c = stats.bootstrap_mean_diff(rng.normal(0.6, 0.3, 100), rng.normal(0.6, 0.3, 100), n_boot=400,
                                          seed=int(rng.integers(1 << 30)))
        hits += c.significant
    rate = hits / N_EXPERIMENTS
    assert LO <= rate <= HI, f"{test}: false-positive rate {rate:.3f} outside [{LO:.3f}, {HI:.3f}]"


def test_power_formula_gives_the_promised_power() -> None:
    """At the required sample size the Welch test detects the effect ~80% of the time."""
    n = stats.required_n_means(0.4, 0.4, 0.1)
    assert n == math.ceil((sst.norm.ppf(0.975) + sst.norm.ppf(0.8)) ** 2 * 0.32 / 0.01) == 252
    rng = np.random.default_rng(3)
    found = np.mean([stats.welch(rng.normal(0.6, 0.4, n), rng.normal(0.5, 0.4, n)).significant for _ in range(400)])
    assert 0.72 < found < 0.88
    mde = stats.minimum_detectable_effect(0.4, 0.4, n, n)
    assert mde is not None and mde == pytest.approx(0.1, rel=0.01)
    assert stats.required_n_proportions(0.5, 0.05) == math.ceil(7.849 * (0.25 + 0.2475) / 0.0025)


def test_undefined_cases_say_so() -> None:
    c = stats.welch([0.5], [0.4, 0.6])
    assert c.p_value is None and c.lo is None and c.diff == pytest.approx(0.0)
    assert stats.two_proportions(0, 0, 1, 5).diff is None
    assert stats.bootstrap_mean_diff([], [1.0, 2.0]).p_value is None
    assert stats.required_n_means(0.3, 0.3, 0.0) is None
