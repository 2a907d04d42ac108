"""Off-policy estimators of a deterministic target policy's mean reward from logged bandit feedback.

Logged decision ``i``: context ``x_i``, the action the logging policy took ``a_i`` with probability
(propensity) ``p_i > 0``, and the observed reward ``r_i`` (quality, or cost). The target policy picks
``a'_i = pi(x_i)``; ``m_i = 1[a_i == a'_i]`` and ``w_i = m_i / p_i``. With a reward model
``q(x, a)`` (any function that did not see ``r_i``; see :mod:`llmroute.offpolicy.reward`):

* IPS (inverse propensity scoring): ``mean_i(w_i r_i)``; unbiased when every action the target
  policy takes had a positive logging probability;
* SNIPS (self-normalised IPS): ``sum_i(w_i r_i) / sum_i(w_i)``; slightly biased, lower variance;
* DM (direct method): ``mean_i(q(x_i, a'_i))``; as good as the reward model, no more;
* DR (doubly robust): ``mean_i(q(x_i, a'_i) + w_i (r_i - q(x_i, a_i)))``; unbiased if either the
  propensities or the reward model are right, and lower variance than IPS when ``q`` is good.

The effective sample size of the importance weights is ``(sum w)^2 / sum w^2``. Intervals are
percentile bootstraps over decisions (resampled with replacement; the reward model is held fixed).
Pure NumPy: no I/O, no routers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from llmroute.experiments.metrics import bootstrap_counts

ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval (``lo``/``hi`` None when undefined)."""

    value: float | None
    lo: float | None
    hi: float | None

    def fmt(self, digits: int = 4, scale: float = 1.0) -> str:
        if self.value is None:
            return "undefined"
        v = f"{self.value * scale:.{digits}f}"
        if self.lo is None or self.hi is None:
            return v
        return f"{v} [{self.lo * scale:.{digits}f}, {self.hi * scale:.{digits}f}]"


@dataclass(frozen=True)
class PolicyEstimate:
    """Every estimator's value of one target policy for one reward, with intervals and overlap."""

    ips: Interval
    snips: Interval
    dm: Interval
    dr: Interval
    matches: int
    effective_sample_size: float
    n: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _interval(point: float | None, samples: np.ndarray, alpha: float) -> Interval:
    ok = samples[np.isfinite(samples)]
    if point is None or not np.isfinite(point):
        return Interval(None, None, None)
    if ok.size == 0:
        return Interval(float(point), None, None)
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return Interval(float(point), float(lo), float(hi))


def _check(
    logged: np.ndarray, target: np.ndarray, propensity: np.ndarray, reward: np.ndarray,
    q_target: np.ndarray, q_logged: np.ndarray,
) -> None:
    n = len(logged)
    for name, a in (("target", target), ("propensity", propensity), ("reward", reward),
                    ("q_target", q_target), ("q_logged", q_logged)):
        if len(a) != n:
            raise ValueError(f"{name} has {len(a)} entries for {n} logged decisions")
    if n and not (np.all(propensity > 0) and np.all(propensity <= 1)):
        raise ValueError("propensities must lie in (0, 1]")
    for name, a in (("reward", reward), ("q_target", q_target), ("q_logged", q_logged)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds NaN or inf")


def dr_terms(
    logged: np.ndarray, target: np.ndarray, propensity: np.ndarray, reward: np.ndarray,
    q_target: np.ndarray, q_logged: np.ndarray,
) -> np.ndarray:
    """Per-decision doubly-robust terms ``q(x, a') + w (r - q(x, a))`` (their mean is the DR estimate)."""
    w = (np.asarray(logged) == np.asarray(target)) / np.asarray(propensity, dtype=np.float64)
    return np.asarray(q_target, dtype=np.float64) + w * (np.asarray(reward, dtype=np.float64) - q_logged)


def estimate(
    logged: np.ndarray,
    target: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q_target: np.ndarray,
    q_logged: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PolicyEstimate:
    """IPS, SNIPS, DM and DR estimates (module docstring) with bootstrap intervals.

    ``logged``/``target``: the logged and the target policy's action per decision (any comparable
    labels, e.g. model names); ``q_target``/``q_logged``: the reward model at (x, a') and (x, a).
    """
    logged, target = np.asarray(logged), np.asarray(target)
    p = np.asarray(propensity, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    qt = np.asarray(q_target, dtype=np.float64)
    ql = np.asarray(q_logged, dtype=np.float64)
    _check(logged, target, p, r, qt, ql)
    n = len(logged)
    if n == 0:
        raise ValueError("no logged decisions to evaluate on")
    w = (logged == target) / p
    cols = np.column_stack([w * r, w, qt, qt + w * (r - ql)])
    point = cols.mean(axis=0)
    samples = np.concatenate([counts @ cols / n for counts in bootstrap_counts(n, n_boot, seed)])
    with np.errstate(invalid="ignore", divide="ignore"):
        snips_s = samples[:, 0] / samples[:, 1]
    snips_point = float(point[0] / point[1]) if point[1] > 0 else None
    ess = float(w.sum() ** 2 / (w**2).sum()) if w.any() else 0.0
    return PolicyEstimate(
        ips=_interval(float(point[0]), samples[:, 0], alpha),
        snips=_interval(snips_point, snips_s, alpha),
        dm=_interval(float(point[2]), samples[:, 2], alpha),
        dr=_interval(float(point[3]), samples[:, 3], alpha),
        matches=int((logged == target).sum()),
        effective_sample_size=ess,
        n=n,
    )


def mean_interval(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval (e.g. a policy's realised on-policy mean,
    or the mean of paired per-decision differences)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Interval(None, None, None)
    samples = np.concatenate([counts @ v / len(v) for counts in bootstrap_counts(len(v), n_boot, seed)])
    return _interval(float(v.mean()), samples, alpha)
