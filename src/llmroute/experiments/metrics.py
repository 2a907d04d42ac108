"""Cost-quality measures for judging routers (see ``shared/docs/metrics.md``).

A *curve* is the set of points ``(mean cost per query in USD, mean quality)`` that a
router traces when its knob is swept; a single model is a curve with one point. All
functions here are pure and depend on numpy only.

Measures:

* :func:`upper_hull`, :func:`aiq` — RouterBench (arXiv 2403.12031).
* :func:`cost_at_quality`, :func:`cost_ratio`, :func:`quality_at_cost` — cost at parity and
  quality at equal cost, read off the router's actual points.
* :func:`pgr`, :func:`apgr`, :func:`cpt` — the two-model measures of RouteLLM (arXiv 2406.18665).
* :func:`false_cheap_rate`, :func:`miss_rate`, :func:`unneeded_escalation_rate`,
  :func:`target_attainment` — per-prompt error rates and calibration.
* :func:`bootstrap_ci`, :func:`bootstrap_diff_ci` — prompt-level bootstrap intervals for any of
  the curve statistics, paired across routers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "BootstrapCI",
    "CurveStat",
    "TargetAttainment",
    "aiq",
    "apgr",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "cost_at_quality",
    "cost_ratio",
    "cpt",
    "false_cheap_rate",
    "miss_rate",
    "pgr",
    "quality_at_cost",
    "target_attainment",
    "unneeded_escalation_rate",
    "upper_hull",
]

FloatArray = npt.NDArray[np.float64]

#: A statistic of one router's curve: ``stat(costs, qualities)`` for its K knob values,
#: returning ``None`` when it is undefined (e.g. a quality target never reached).
CurveStat = Callable[[FloatArray, FloatArray], float | None]

# Absolute slack for comparisons of means against targets and budgets, so that a point that
# equals the target up to floating-point noise (means summed in a different order) counts.
_TOL = 1e-12


# ---------------------------------------------------------------------------------------------
# Input checks


def _curve(costs: npt.ArrayLike, qualities: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    q = np.asarray(qualities, dtype=np.float64).reshape(-1)
    if c.shape != q.shape:
        raise ValueError(
            f"costs and qualities must have the same length, got {c.size} costs "
            f"and {q.size} qualities"
        )
    if c.size == 0:
        raise ValueError("a curve needs at least one (cost, quality) point, got none")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(q))):
        raise ValueError("costs and qualities must be finite numbers (no NaN or inf)")
    return c, q


def _trapezoid(x: FloatArray, y: FloatArray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


# ---------------------------------------------------------------------------------------------
# RouterBench: hull and AIQ


def upper_hull(costs: npt.ArrayLike, qualities: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Non-decreasing upper convex hull of a router's points (RouterBench's AIQ hull).

    First every dominated point is removed: a point is dominated when some point that costs
    no more has at least its quality (of equal-cost points only the best survives). The
    remaining points rise strictly in both cost and quality; of these the upper concave
    envelope is kept, dropping points on or below the chord between their neighbours. Any
    point on the hull can be reached by randomly mixing the two knob values at its ends.

    Args:
        costs: mean cost per query (USD) of each point.
        qualities: mean quality of each point.

    Returns:
        ``(hull_costs, hull_qualities)``, sorted by cost; both strictly increasing and the
        qualities concave in cost. A single point is its own hull.
    """
    c, q = _curve(costs, qualities)
    order = np.lexsort((-q, c))  # by cost, best quality first among equal costs
    c, q = c[order], q[order]
    keep = np.ones(c.size, dtype=bool)
    best = -math.inf
    for i in range(c.size):
        if q[i] > best:
            best = q[i]
        else:
            keep[i] = False
    c, q = c[keep], q[keep]

    hull: list[int] = []
    for i in range(c.size):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (c[a] - c[o]) * (q[i] - q[o]) - (q[a] - q[o]) * (c[i] - c[o])
            if cross >= 0:  # a lies on or below the chord o→i
                hull.pop()
            else:
                break
        hull.append(i)
    idx = np.asarray(hull, dtype=np.intp)
    return c[idx], q[idx]


def aiq(
    costs: npt.ArrayLike,
    qualities: npt.ArrayLike,
    c_min: float,
    c_max: float,
    q_floor: float | None = None,
) -> float:
    """Average Improvement in Quality (RouterBench): mean hull quality over ``[c_min, c_max]``.

    The router's points are replaced by their :func:`upper_hull` ``h``, which is integrated
    over cost from ``c_min`` to ``c_max`` and divided by ``c_max - c_min``. Usually
    ``c_min``/``c_max`` are the costs of the cheapest and most expensive single model, and
    the same range is used for every router in a comparison.

    Boundary rule (the hull does not in general span the whole range):

    * Right of the most expensive hull point the hull is extended flat: spending more never
      lowers the achievable quality.
    * If the cheapest hull point costs at most ``c_min``, the hull itself covers the left end
      (interpolated linearly between hull points).
    * Otherwise the router has no point on ``[c_min, c0)``, where ``(c0, q0)`` is its cheapest
      hull point. There the quality is interpolated linearly from ``(c_min, q_floor)`` to
      ``(c0, q0)``. ``q_floor`` should be the quality of the cheapest single model, which any
      router reaches by always calling it; if it is ``None`` the floor is 0, which penalises
      a router for the part of the range it cannot reach. (If ``c0 >= c_max`` the whole range
      lies on that line.)

    Args:
        costs: mean cost per query (USD) of each of the router's points.
        qualities: mean quality of each point.
        c_min: start of the integration range.
        c_max: end of the integration range; must exceed ``c_min``.
        q_floor: quality at ``c_min`` used when the router's cheapest point costs more than
            ``c_min``; ``None`` means 0.

    Returns:
        The mean quality over the cost range (in the units of ``qualities``).
    """
    if not (math.isfinite(c_min) and math.isfinite(c_max)) or c_max <= c_min:
        raise ValueError(f"need finite c_min < c_max, got c_min={c_min!r}, c_max={c_max!r}")
    hc, hq = upper_hull(costs, qualities)
    if hc[0] > c_min:
        floor = 0.0 if q_floor is None else float(q_floor)
        hc = np.concatenate(([c_min], hc))
        hq = np.concatenate(([floor], hq))
    inner = hc[(hc > c_min) & (hc < c_max)]
    grid = np.concatenate(([c_min], inner, [c_max]))
    values = np.interp(grid, hc, hq)  # np.interp is flat beyond the last knot
    return _trapezoid(grid, values) / (c_max - c_min)


# ---------------------------------------------------------------------------------------------
# Cost at parity, quality at equal cost


def cost_at_quality(costs: npt.ArrayLike, qualities: npt.ArrayLike, target: float) -> float | None:
    """Lowest mean cost among the router's own points whose quality reaches ``target``.

    Only measured points count (no interpolation along the hull): a conservative reading of
    "cost at parity". Quality equal to ``target`` up to 1e-12 counts as reached.

    Returns:
        The cost, or ``None`` if no point reaches the target.
    """
    c, q = _curve(costs, qualities)
    ok = q >= target - _TOL
    return float(c[ok].min()) if ok.any() else None


def cost_ratio(reference_cost: float, router_cost: float | None) -> float | None:
    """How many times cheaper the router is: ``reference_cost / router_cost`` ("3.1x lower cost").

    Returns:
        The ratio; ``None`` if ``router_cost`` is ``None`` (the router never reached the
        quality); ``inf`` if the router is free and the reference is not; 1.0 if both are free.
    """
    if router_cost is None:
        return None
    if reference_cost < 0 or router_cost < 0:
        raise ValueError(
            f"costs must be non-negative, got reference_cost={reference_cost!r}, "
            f"router_cost={router_cost!r}"
        )
    if router_cost == 0:
        return 1.0 if reference_cost == 0 else math.inf
    return reference_cost / router_cost


def quality_at_cost(costs: npt.ArrayLike, qualities: npt.ArrayLike, budget: float) -> float | None:
    """Best quality among the router's own points whose mean cost is at most ``budget``.

    Returns:
        The quality, or ``None`` if every point costs more than ``budget`` (plus 1e-12).
    """
    c, q = _curve(costs, qualities)
    ok = c <= budget + _TOL
    return float(q[ok].max()) if ok.any() else None


# ---------------------------------------------------------------------------------------------
# RouteLLM: PGR, APGR, CPT


@overload
def pgr(q: float, q_weak: float, q_strong: float) -> float: ...
@overload
def pgr(q: FloatArray, q_weak: float, q_strong: float) -> FloatArray: ...
def pgr(q: float | FloatArray, q_weak: float, q_strong: float) -> float | FloatArray:
    """Performance Gap Recovered: ``(q - q_weak) / (q_strong - q_weak)``.

    0 is the weak model's quality, 1 the strong model's. Works element-wise on arrays.
    """
    gap = q_strong - q_weak
    if gap == 0:
        raise ValueError(f"PGR is undefined when q_strong == q_weak (both {q_weak!r})")
    if isinstance(q, np.ndarray):
        return (q.astype(np.float64) - q_weak) / gap
    return (float(q) - q_weak) / gap


def _pgr_curve(
    strong_share: npt.ArrayLike, qualities: npt.ArrayLike, q_weak: float, q_strong: float
) -> tuple[FloatArray, FloatArray]:
    """Piecewise-linear PGR curve over the share of strong calls, endpoints included."""
    s, q = _curve(strong_share, qualities)
    if s.min() < 0 or s.max() > 1:
        raise ValueError(
            f"strong_share must lie in [0, 1], got values from {s.min()!r} to {s.max()!r}"
        )
    p = pgr(q, q_weak, q_strong)
    if not np.any(s == 0.0):
        s, p = np.concatenate(([0.0], s)), np.concatenate(([0.0], p))
    if not np.any(s == 1.0):
        s, p = np.concatenate((s, [1.0])), np.concatenate((p, [1.0]))
    shares, inverse = np.unique(s, return_inverse=True)
    counts = np.bincount(inverse)
    mean_p = np.bincount(inverse, weights=p) / counts
    return shares.astype(np.float64), mean_p.astype(np.float64)


def apgr(
    strong_share: npt.ArrayLike, qualities: npt.ArrayLike, q_weak: float, q_strong: float
) -> float:
    """Average Performance Gap Recovered (RouteLLM): area under PGR over the strong-call share.

    The router's points ``(share of calls to the strong model, mean quality)`` are turned into
    PGR, the endpoints ``(0, 0)`` (always weak) and ``(1, 1)`` (always strong) are added
    unless a point already sits at that share, points are sorted by share, and the
    piecewise-linear curve is integrated with the trapezoid rule over ``[0, 1]``. Several
    points at the same share are merged into their mean PGR. A random router (PGR = share)
    scores 0.5.

    Args:
        strong_share: share of prompts sent to the strong model at each knob value, in [0, 1].
        qualities: the router's mean quality at each knob value.
        q_weak: mean quality of always calling the weak model.
        q_strong: mean quality of always calling the strong model.
    """
    s, p = _pgr_curve(strong_share, qualities, q_weak, q_strong)
    return _trapezoid(s, p)


def cpt(
    strong_share: npt.ArrayLike,
    qualities: npt.ArrayLike,
    q_weak: float,
    q_strong: float,
    x: float,
) -> float | None:
    """Call-Performance Threshold (RouteLLM): smallest strong-call share at which PGR reaches ``x``.

    ``x`` is a fraction (``0.5`` for CPT(50%)). The curve is the one :func:`apgr` integrates;
    the share is read off by linear interpolation along its first upward crossing of ``x``.
    A random router gives ``x``.

    Returns:
        The share in [0, 1], or ``None`` if the curve never reaches ``x``.
    """
    s, p = _pgr_curve(strong_share, qualities, q_weak, q_strong)
    hits = np.flatnonzero(p >= x)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(s[0])
    frac = (x - p[i - 1]) / (p[i] - p[i - 1])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


# ---------------------------------------------------------------------------------------------
# Per-prompt error rates and calibration


def false_cheap_rate(
    quality_matrix: npt.ArrayLike,
    costs: npt.ArrayLike,
    chosen: npt.ArrayLike,
    target: float = 1.0,
) -> float:
    """Share of prompts routed too cheaply.

    A prompt counts when the chosen model missed the target (quality < ``target``) **and**
    some model that is more expensive on that prompt would have met it (quality >= target).
    Misses that no dearer model would have fixed are not counted; see :func:`miss_rate` for
    the plain share of missed prompts.

    Args:
        quality_matrix: ``(n, m)`` quality of each of ``m`` models on each of ``n`` prompts.
            NaN marks an unknown quality, which never counts as meeting the target.
        costs: ``(n, m)`` cost of each model on each prompt (USD).
        chosen: ``(n,)`` integer index of the model the router chose for each prompt.
        target: the quality a prompt's answer has to reach.

    Returns:
        The share of the ``n`` prompts, in [0, 1].
    """
    q = np.asarray(quality_matrix, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    ch = np.asarray(chosen)
    if q.ndim != 2 or c.shape != q.shape:
        raise ValueError(
            f"quality_matrix and costs must both be (n, m); got {q.shape} and {c.shape}"
        )
    n, m = q.shape
    if n == 0:
        raise ValueError("false_cheap_rate needs at least one prompt")
    if ch.shape != (n,) or not np.issubdtype(ch.dtype, np.integer):
        raise ValueError(f"chosen must be ({n},) integer model indices, got {ch.shape} {ch.dtype}")
    if ch.min() < 0 or ch.max() >= m:
        raise ValueError(f"chosen holds indices outside [0, {m - 1}]")
    rows = np.arange(n)
    q_chosen = q[rows, ch]
    if not np.all(np.isfinite(q_chosen)):
        raise ValueError("the chosen model's quality is NaN or inf on some prompt")
    missed = q_chosen < target - _TOL
    dearer = c > c[rows, ch][:, None]
    rescuable = np.any(dearer & (q >= target - _TOL), axis=1)
    return float(np.mean(missed & rescuable))


def miss_rate(chosen_quality: npt.ArrayLike, target: float = 1.0) -> float:
    """Share of prompts whose routed answer missed the target (quality < ``target``)."""
    q = np.asarray(chosen_quality, dtype=np.float64).reshape(-1)
    if q.size == 0 or not np.all(np.isfinite(q)):
        raise ValueError("chosen_quality must be a non-empty array of finite numbers")
    return float(np.mean(q < target - _TOL))


def unneeded_escalation_rate(
    first_quality: npt.ArrayLike, escalated: npt.ArrayLike, target: float = 1.0
) -> float:
    """For cascades: share of all prompts that escalated although the first answer met the target.

    Args:
        first_quality: ``(n,)`` quality of the first (cheap) answer on each prompt.
        escalated: ``(n,)`` booleans, whether the cascade escalated the prompt.
        target: the quality a prompt's answer has to reach.
    """
    q = np.asarray(first_quality, dtype=np.float64).reshape(-1)
    e = np.asarray(escalated).reshape(-1)
    if q.size == 0 or q.shape != e.shape:
        raise ValueError(
            f"first_quality and escalated must be non-empty and equally long, "
            f"got {q.size} and {e.size}"
        )
    if e.dtype != np.bool_:
        raise ValueError(f"escalated must be booleans, got dtype {e.dtype}")
    return float(np.mean(e & (q >= target - _TOL)))


class TargetAttainment(TypedDict):
    """Whether a router met the quality it was asked for, on held-out data."""

    realised: float
    target: float
    met: bool
    shortfall: float


def target_attainment(realised_quality: float, target: float) -> TargetAttainment:
    """Compare the realised mean quality with the requested target.

    Returns:
        ``realised``, ``target``, ``met`` (realised >= target, up to 1e-12) and ``shortfall``
        (``max(0, target - realised)``).
    """
    realised = float(realised_quality)
    return TargetAttainment(
        realised=realised,
        target=float(target),
        met=bool(realised >= target - _TOL),
        shortfall=max(0.0, float(target) - realised),
    )


# ---------------------------------------------------------------------------------------------
# Bootstrap


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap estimate with a percentile interval.

    Unpacks as ``point, lo, hi = result``. ``point`` is the statistic on the full sample;
    ``lo``/``hi`` are the ``alpha/2`` and ``1 - alpha/2`` quantiles over the resamples on
    which the statistic was defined; ``none_share`` is the share of resamples on which it
    was not (``None`` or NaN). Any of the three values is ``None`` when undefined.
    """

    point: float | None
    lo: float | None
    hi: float | None
    none_share: float
    n_boot: int
    alpha: float

    def __iter__(self) -> Iterator[float | None]:
        return iter((self.point, self.lo, self.hi))


def _per_prompt(a: npt.ArrayLike, name: str) -> FloatArray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be (n prompts, K knob values), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or inf")
    return x


def _router(
    quality: npt.ArrayLike, cost: npt.ArrayLike, label: str
) -> tuple[FloatArray, FloatArray]:
    q = _per_prompt(quality, f"{label} quality")
    c = _per_prompt(cost, f"{label} cost")
    if q.shape != c.shape:
        raise ValueError(f"{label} quality {q.shape} and cost {c.shape} must have the same shape")
    return q, c


def bootstrap_counts(n: int, n_boot: int, seed: int = 0, chunk_cells: int = 4_000_000) -> Iterator[FloatArray]:
    """Chunks of bootstrap resamples of ``n`` items as count matrices ``(b, n)``: row ``r`` holds how
    often each item was drawn in resample ``r`` (row sums = n), so the resample means of a column
    ``x`` are ``counts @ x / n``. ``chunk_cells`` bounds a chunk's size; the resamples themselves
    depend only on ``seed``."""
    if n < 1:
        raise ValueError("bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, chunk_cells // n))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def _resampled_means(
    matrices: Sequence[FloatArray], n_boot: int, seed: int
) -> Iterator[list[FloatArray]]:
    """Yield chunks of column means of every matrix on the same prompt resamples (:func:`bootstrap_counts`)."""
    n = matrices[0].shape[0]
    for w in bootstrap_counts(n, n_boot, seed):
        yield [w @ x / n for x in matrices]


def _defined(value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def _summarise(
    point: float | None, values: list[float | None], n_boot: int, alpha: float
) -> BootstrapCI:
    ok = np.asarray([v for v in values if v is not None], dtype=np.float64)
    none_share = 1.0 - ok.size / n_boot
    if ok.size == 0:
        return BootstrapCI(point, None, None, none_share, n_boot, alpha)
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(point, float(lo), float(hi), none_share, n_boot, alpha)


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def bootstrap_ci(
    per_prompt_quality: npt.ArrayLike,
    per_prompt_cost: npt.ArrayLike,
    stat: CurveStat,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile bootstrap interval for a statistic of one router's curve.

    Column ``k`` of the ``(n, K)`` inputs holds the router's per-prompt quality and cost at
    knob value ``k``. Prompts (rows) are resampled with replacement, the same rows for every
    column; on each resample ``stat(column mean costs, column mean qualities)`` is evaluated.
    Resamples on which ``stat`` returns ``None`` (or NaN) are left out of the interval and
    reported as ``none_share``. A 1-D input is read as a single column.

    Example: ``bootstrap_ci(Q, C, lambda c, q: aiq(c, q, c_lo, c_hi))``.

    Returns:
        A :class:`BootstrapCI`; unpacks as ``point, lo, hi``.
    """
    _check_boot(n_boot, alpha)
    q, c = _router(per_prompt_quality, per_prompt_cost, "per_prompt")
    point = _defined(stat(c.mean(axis=0), q.mean(axis=0)))
    values: list[float | None] = []
    for mq, mc in _resampled_means([q, c], n_boot, seed):
        values.extend(_defined(stat(mc[i], mq[i])) for i in range(mq.shape[0]))
    return _summarise(point, values, n_boot, alpha)


def bootstrap_diff_ci(
    quality_a: npt.ArrayLike,
    cost_a: npt.ArrayLike,
    quality_b: npt.ArrayLike,
    cost_b: npt.ArrayLike,
    stat: CurveStat,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Paired percentile bootstrap interval for ``stat(router A) - stat(router B)``.

    Both routers must be evaluated on the same ``n`` prompts in the same row order (their
    numbers of knob values may differ). Each resample draws one set of rows and uses it for
    both routers, so prompt difficulty cancels out of the difference. A resample counts as
    undefined (``none_share``) when ``stat`` is undefined for either router.

    Returns:
        A :class:`BootstrapCI` of the difference A - B; unpacks as ``point, lo, hi``.
    """
    _check_boot(n_boot, alpha)
    qa, ca = _router(quality_a, cost_a, "router A")
    qb, cb = _router(quality_b, cost_b, "router B")
    if qa.shape[0] != qb.shape[0]:
        raise ValueError(
            f"routers must be evaluated on the same prompts, got {qa.shape[0]} and "
            f"{qb.shape[0]} rows"
        )

    def diff(ca_: FloatArray, qa_: FloatArray, cb_: FloatArray, qb_: FloatArray) -> float | None:
        a = _defined(stat(ca_, qa_))
        b = _defined(stat(cb_, qb_))
        return None if a is None or b is None else a - b

    point = diff(ca.mean(axis=0), qa.mean(axis=0), cb.mean(axis=0), qb.mean(axis=0))
    values: list[float | None] = []
    for mqa, mca, mqb, mcb in _resampled_means([qa, ca, qb, cb], n_boot, seed):
        values.extend(diff(mca[i], mqa[i], mcb[i], mqb[i]) for i in range(mqa.shape[0]))
    return _summarise(point, values, n_boot, alpha)
