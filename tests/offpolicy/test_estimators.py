"""IPS / SNIPS / DM / DR on synthetic logged bandit data whose true target-policy value is known."""

from __future__ import annotations

import numpy as np
import pytest

from llmroute.offpolicy.estimators import estimate, mean_interval

K = 4
SHARE = 0.3


def simulate(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Contexts x ~ U(0,1); mean reward mu(x, a); logging = a0(x) w.p. 1 - SHARE, else one of the
    other K - 1 uniformly; target = a deterministic policy that disagrees with a0 half the time."""
    x = rng.uniform(size=n)
    mu = np.column_stack([0.2 + 0.6 * x, 0.8 - 0.6 * x, np.full(n, 0.5), 0.3 + 0.4 * np.sin(6 * x) ** 2])
    a0 = (x > 0.5).astype(int)  # the logging router's pick
    explore = rng.uniform(size=n) < SHARE
    other = (a0 + 1 + rng.integers(0, K - 1, size=n)) % K
    logged = np.where(explore, other, a0)
    p = np.where(explore, SHARE / (K - 1), 1 - SHARE)
    target = np.argmax(mu, axis=1)  # the best action: disagrees with a0 on part of the range
    r = rng.binomial(1, mu[np.arange(n), logged]).astype(float)
    return {"x": x, "mu": mu, "logged": logged, "p": p, "target": target, "r": r,
            "true": float(mu[np.arange(n), target].mean())}


def run(d: dict[str, np.ndarray], q: np.ndarray, n_boot: int = 1):
    n = len(d["x"])
    rows = np.arange(n)
    return estimate(d["logged"], d["target"], d["p"], d["r"], q[rows, d["target"]], q[rows, d["logged"]],
                    n_boot=n_boot, seed=int(d["x"][0] * 1e6))


def test_ips_and_dr_are_unbiased_and_dr_has_lower_variance_with_a_good_reward_model() -> None:
    rng = np.random.default_rng(0)
    ips, dr, dr_bad, snips, truth = [], [], [], [], []
    for _ in range(300):
        d = simulate(rng, 400)
        good = np.clip(d["mu"] + rng.normal(0, 0.05, d["mu"].shape), 0, 1)
        bad = np.full_like(d["mu"], 0.5)  # a useless reward model: DR must still be unbiased
        e, e_bad = run(d, good), run(d, bad)
        ips.append(e.ips.value)
        snips.append(e.snips.value)
        dr.append(e.dr.value)
        dr_bad.append(e_bad.dr.value)
        truth.append(d["true"])
    ips_a, dr_a, bad_a, sn_a, t = map(np.asarray, (ips, dr, dr_bad, snips, truth))
    # unbiased over repetitions: the mean error is within 3 standard errors of zero
    for name, est in (("ips", ips_a), ("dr", dr_a), ("dr with a constant reward model", bad_a)):
        err = est - t
        assert abs(err.mean()) < 3 * err.std() / np.sqrt(len(err)) + 1e-3, name
    assert abs((sn_a - t).mean()) < 0.01  # SNIPS: consistent, tiny bias at n=400
    # a good reward model cuts the variance a lot
    assert (dr_a - t).std() < 0.75 * (ips_a - t).std()
    # and the estimates are useful at all: IPS error spread well under the value's scale
    assert (ips_a - t).std() < 0.15


def test_bootstrap_intervals_cover_the_true_value() -> None:
    rng = np.random.default_rng(1)
    covered_ips = covered_dr = 0
    reps = 80
    for _ in range(reps):
        d = simulate(rng, 500)
        good = np.clip(d["mu"] + rng.normal(0, 0.05, d["mu"].shape), 0, 1)
        e = run(d, good, n_boot=300)
        # the population value of the target policy (contexts are U(0,1)): its mean over this sample
        covered_ips += e.ips.lo <= d["true"] <= e.ips.hi
        covered_dr += e.dr.lo <= d["true"] <= e.dr.hi
    assert covered_ips / reps >= 0.85
    assert covered_dr / reps >= 0.85


def test_a_target_that_always_agrees_with_the_logged_action_gives_the_realised_mean_reweighted() -> None:
    logged = np.array(["a", "b", "a", "a"])
    p = np.array([0.5, 1.0, 0.5, 1.0])
    r = np.array([1.0, 0.0, 0.0, 1.0])
    e = estimate(logged, logged, p, r, np.zeros(4), np.zeros(4), n_boot=50)
    assert e.ips.value == pytest.approx(np.mean(r / p))
    assert e.snips.value == pytest.approx(np.sum(r / p) / np.sum(1 / p))
    assert e.dr.value == pytest.approx(e.ips.value)  # a zero reward model: DR = IPS
    assert e.dm.value == 0.0
    assert e.matches == 4
    assert e.effective_sample_size == pytest.approx(np.sum(1 / p) ** 2 / np.sum(1 / p**2))


def test_no_match_at_all_leaves_ips_at_zero_and_snips_undefined() -> None:
    e = estimate(np.array(["a", "a"]), np.array(["b", "b"]), np.array([1.0, 1.0]), np.array([1.0, 1.0]),
                 np.array([0.7, 0.9]), np.array([0.5, 0.5]), n_boot=20)
    assert e.ips.value == 0.0
    assert e.snips.value is None
    assert e.dr.value == pytest.approx(0.8)  # only the reward model speaks
    assert e.matches == 0 and e.effective_sample_size == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"propensity": np.array([0.0, 1.0])}, "propensities must lie in"),
        ({"propensity": np.array([0.5])}, "propensity has 1 entries for 2"),
        ({"reward": np.array([np.nan, 1.0])}, "reward holds NaN"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    args = {"logged": np.array(["a", "b"]), "target": np.array(["a", "a"]), "propensity": np.array([0.5, 1.0]),
            "reward": np.array([1.0, 0.0]), "q_target": np.zeros(2), "q_logged": np.zeros(2)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        estimate(**args)


def test_mean_interval_brackets_the_mean() -> None:
    v = np.random.default_rng(3).normal(1.0, 1.0, 400)
    iv = mean_interval(v, n_boot=500)
    assert iv.lo < v.mean() < iv.hi
    assert iv.hi - iv.lo == pytest.approx(2 * 1.96 * v.std() / 20, rel=0.25)
    assert mean_interval(np.array([])).value is None
