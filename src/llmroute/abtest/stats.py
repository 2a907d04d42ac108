"""Two-sample statistics for A/B comparisons (treatment minus control), on scipy.stats.

* :func:`welch` — difference in means with Welch's t-test and its t interval (unequal variances).
* :func:`two_proportions` — difference in proportions: pooled two-proportion z-test for the p-value,
  Wald interval (unpooled standard error) for the 95% interval.
* :func:`bootstrap_mean_diff` — percentile bootstrap interval of the difference in means, resampling
  each arm independently (the arms hold different units, so nothing is paired).
* :func:`required_n_means`, :func:`required_n_proportions` — requests per arm needed to detect an
  effect with a two-sided test at ``alpha`` with the given power (normal approximation).

Every result says how many observations it rests on; with fewer than two per arm (or no variance
at all) the test is undefined and its fields are None rather than a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as st


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: point estimate, ``1 - alpha`` interval and two-sided p-value."""

    test: str
    n_treatment: int
    n_control: int
    treatment: float | None
    control: float | None
    diff: float | None
    lo: float | None
    hi: float | None
    p_value: float | None
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in (
            "test", "n_treatment", "n_control", "treatment", "control", "diff", "lo", "hi", "p_value", "alpha")
        } | {"significant": self.significant}


def _arr(x: npt.ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def welch(treatment: npt.ArrayLike, control: npt.ArrayLike, alpha: float = 0.05) -> Comparison:
    """Welch's t-test of the difference in means and its Welch-Satterthwaite t interval."""
    a, b = _arr(treatment), _arr(control)
    ma = float(a.mean()) if a.size else None
    mb = float(b.mean()) if b.size else None
    diff = None if ma is None or mb is None else ma - mb
    if a.size < 2 or b.size < 2:
        return Comparison("welch", a.size, b.size, ma, mb, diff, None, None, None, alpha)
    assert diff is not None
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # two constants: the difference is exact
        return Comparison("welch", a.size, b.size, ma, mb, diff, diff, diff, 0.0 if diff else 1.0, alpha)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    p = float(2 * st.t.sf(abs(diff) / se, df))  # = scipy.stats.ttest_ind(a, b, equal_var=False).pvalue
    half = float(st.t.ppf(1 - alpha / 2, df)) * se
    return Comparison("welch", a.size, b.size, ma, mb, diff, diff - half, diff + half, p, alpha)


def two_proportions(
    successes_t: int, n_t: int, successes_c: int, n_c: int, alpha: float = 0.05
) -> Comparison:
    """Two-proportion z-test (pooled variance) with a Wald interval of the difference."""
    pt = successes_t / n_t if n_t else None
    pc = successes_c / n_c if n_c else None
    diff = None if pt is None or pc is None else pt - pc
    if n_t < 2 or n_c < 2 or diff is None or pt is None or pc is None:
        return Comparison("two_proportion_z", n_t, n_c, pt, pc, diff, None, None, None, alpha)
    pooled = (successes_t + successes_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p = None if se0 == 0.0 else float(2 * st.norm.sf(abs(diff) / se0))
    se = math.sqrt(pt * (1 - pt) / n_t + pc * (1 - pc) / n_c)
    z = float(st.norm.ppf(1 - alpha / 2))
    return Comparison("two_proportion_z", n_t, n_c, pt, pc, diff, diff - z * se, diff + z * se, p, alpha)


def bootstrap_mean_diff(
    treatment: npt.ArrayLike, control: npt.ArrayLike, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> Comparison:
    """Percentile bootstrap of mean(treatment) - mean(control), arms resampled independently.

    The p-value is the two-sided bootstrap p: twice the smaller share of resampled differences on
    either side of zero (at least 1 / n_boot)."""
    a, b = _arr(treatment), _arr(control)
    ma = float(a.mean()) if a.size else None
    mb = float(b.mean()) if b.size else None
    diff = None if ma is None or mb is None else ma - mb
    if a.size < 2 or b.size < 2 or diff is None:
        return Comparison("bootstrap", a.size, b.size, ma, mb, diff, None, None, None, alpha)
    rng = np.random.default_rng(seed)

    def means(x: np.ndarray) -> np.ndarray:
        # multinomial counts per resample, in chunks that keep memory near 4M numbers
        chunk = max(1, 4_000_000 // x.size)
        out = [rng.multinomial(x.size, np.full(x.size, 1.0 / x.size), size=min(chunk, n_boot - i)) @ x / x.size
               for i in range(0, n_boot, chunk)]
        return np.concatenate(out)

    d = means(a) - means(b)
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    if np.all(d == d[0]):
        p = None
    else:
        p = float(min(1.0, max(2 * min(np.mean(d <= 0), np.mean(d >= 0)), 1.0 / n_boot)))
    return Comparison("bootstrap", a.size, b.size, ma, mb, diff, float(lo), float(hi), p, alpha)


def _z(alpha: float, power: float) -> float:
    return float(st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power))


def required_n_means(sd_treatment: float, sd_control: float, effect: float, alpha: float = 0.05,
                     power: float = 0.8) -> int | None:
    """Requests per arm to detect a difference in means of ``effect`` (None when undefined)."""
    if effect <= 0 or not (math.isfinite(sd_treatment) and math.isfinite(sd_control)):
        return None
    var = sd_treatment**2 + sd_control**2
    if var == 0:
        return 2
    return max(2, math.ceil(_z(alpha, power) ** 2 * var / effect**2))


def required_n_proportions(p_control: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Requests per arm to detect a change of ``effect`` from rate ``p_control`` (towards 0.5 when the
    sign is not known, the harder case)."""
    if effect <= 0 or not 0 <= p_control <= 1:
        return None
    p_t = p_control + effect if p_control + effect <= 1 else p_control - effect
    if not 0 <= p_t <= 1:
        return None
    var = p_control * (1 - p_control) + p_t * (1 - p_t)
    if var == 0:
        return 2
    return max(2, math.ceil(_z(alpha, power) ** 2 * var / effect**2))


def minimum_detectable_effect(sd_treatment: float, sd_control: float, n_treatment: int, n_control: int,
                              alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest difference in means the current sample detects with ``power`` (None below 2 per arm)."""
    if n_treatment < 2 or n_control < 2:
        return None
    return _z(alpha, power) * math.sqrt(sd_treatment**2 / n_treatment + sd_control**2 / n_control)
