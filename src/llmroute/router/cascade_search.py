"""Vectorised outcomes of the cascade rule over a grid of acceptance thresholds, for fitting.

When no call fails, a cascade's path is fixed by its first model: :func:`chain_for` walks it with
:class:`~llmroute.router.cascade_policy.CascadeWalk` (escalating every answer), so the chain is the
served rule's. Along that chain only the *stopping* attempt depends on the thresholds; the answer
delivered when stopping at attempt ``s`` (the most confident so far, the latest on ties) and the cost
paid up to it do not. :func:`sweep_thresholds` therefore evaluates every (t0, t1) pair of a grid at
once from histograms of where each prompt's confidences fall on the grid. Guarantee: for a chain of at most three attempts its mean quality and
cost equal those of walking every prompt with :class:`CascadeWalk` at those thresholds (tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from llmroute.router.cascade_policy import CascadeRule, CascadeWalk
from llmroute.router.decision import Candidate

THRESHOLD_GRID = np.round(np.linspace(0.0, 1.0, 41), 4)


def chain_for(rule: CascadeRule, candidates: Mapping[str, Candidate], first: str) -> tuple[str, ...]:
    """The models the cascade calls, in order, when every answer is escalated and no call fails."""
    walk = CascadeWalk(rule, candidates, first)
    out: list[str] = []
    while (m := walk.next()) is not None:
        out.append(m)
        walk.answered(m, -np.inf)
    return tuple(out)


def stop_outcomes(conf: np.ndarray, quality: np.ndarray, cost: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, S) delivered quality and cumulative cost if the cascade stops after attempt s (0 where
    attempt s does not exist)."""
    n, S = conf.shape
    c = np.where(valid, conf, -np.inf)
    best = np.zeros(n, dtype=int)
    qd = np.zeros((n, S))
    rows = np.arange(n)
    for s in range(S):
        if s > 0:
            best = np.where(c[:, s] >= c[rows, best], s, best)
        qd[:, s] = np.where(valid[:, s], quality[rows, best], 0.0)
    cc = np.cumsum(np.where(valid, cost, 0.0), axis=1)
    return qd, np.where(valid, cc, 0.0)


def sweep_thresholds(
    conf: np.ndarray, quality: np.ndarray, cost: np.ndarray, valid: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """(T, T) mean delivered quality and mean cost for thresholds (grid[a] on attempt 0, grid[b] on
    attempt 1); (n, S) inputs with S <= 3, column s = attempt s of each prompt's chain; ``grid``
    ascending.

    Computed from sufficient statistics in O(n log T + T^2), not O(n T^2): a prompt stops after attempt
    0 for the thresholds grid[a] with a < k0 (k0 = how many grid values its confidence reaches, or T
    when it has no second attempt), and after attempt 1 for b < k1 likewise. So the sums over prompts
    are cumulative sums of histograms over k0 and over (k0, k1). Guarantee: equal (to rounding) to
    evaluating every prompt at every threshold pair (:func:`sweep_thresholds_dense`, tested)."""
    n, S = conf.shape
    if S > 3:
        raise ValueError(f"the threshold sweep covers chains of at most 3 attempts, got {S}")
    conf, quality, cost, valid = _padded(conf, quality, cost, valid)
    qd, cc = stop_outcomes(conf, quality, cost, valid)
    g = np.asarray(grid, dtype=float)
    T = len(g)
    k0 = np.where(valid[:, 1], _reached(conf[:, 0], g), T)  # stop after attempt 0 for a < k0
    k1 = np.where(valid[:, 2], _reached(conf[:, 1], g), T)  # stop after attempt 1 for b < k1

    def mean(v: np.ndarray) -> np.ndarray:
        # prompts stopping at attempt 0 for threshold a: k0 > a; the others go on (k0 <= a)
        h0 = np.bincount(k0, weights=v[:, 0], minlength=T + 1)
        h2 = np.bincount(k0, weights=v[:, 2], minlength=T + 1)
        stop_at_0 = np.cumsum(h0[::-1])[::-1][1:]  # sum over k0 > a, a = 0..T-1
        go_on = np.cumsum(h2)[:T]  # sum over k0 <= a of v2
        # of those going on, the ones stopping at attempt 1 (k1 > b) deliver v1 instead of v2
        d = np.bincount(k0 * (T + 1) + k1, weights=v[:, 1] - v[:, 2], minlength=(T + 1) ** 2).reshape(T + 1, T + 1)
        d = np.cumsum(d, axis=0)[:T]  # k0 <= a
        d = np.cumsum(d[:, ::-1], axis=1)[:, ::-1][:, 1:]  # k1 > b
        return (stop_at_0 + go_on)[:, None] / n + d / n

    return mean(qd), mean(cc)


def _reached(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """How many of the (ascending) grid values each x reaches (x >= value); 0 for NaN."""
    k = np.searchsorted(grid, x, side="right")
    return np.where(np.isnan(x), 0, k)


def _padded(
    conf: np.ndarray, quality: np.ndarray, cost: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n, S = conf.shape
    pad = 3 - S
    if pad:
        conf, quality, cost = (np.hstack([a, np.zeros((n, pad))]) for a in (conf, quality, cost))
        valid = np.hstack([valid, np.zeros((n, pad), dtype=bool)])
    return conf, quality, cost, valid


def sweep_thresholds_dense(
    conf: np.ndarray, quality: np.ndarray, cost: np.ndarray, valid: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sweep_thresholds` by evaluating every prompt at every threshold pair with two matrix
    products, O(n T^2): the reference the fast sweep is tested against."""
    n, S = conf.shape
    if S > 3:
        raise ValueError(f"the threshold sweep covers chains of at most 3 attempts, got {S}")
    conf, quality, cost, valid = _padded(conf, quality, cost, valid)
    qd, cc = stop_outcomes(conf, quality, cost, valid)
    g = np.asarray(grid, dtype=float)[:, None]
    stop0 = ((conf[None, :, 0] >= g) | ~valid[None, :, 1]).astype(float)  # (T, n)
    stop1 = ((conf[None, :, 1] >= g) | ~valid[None, :, 2]).astype(float)

    def mean(v: np.ndarray) -> np.ndarray:
        base = stop0 @ v[:, 0] + (1 - stop0) @ v[:, 2]
        return (base[:, None] + (1 - stop0) @ (stop1 * (v[:, 1] - v[:, 2])).T) / n

    return mean(qd), mean(cc)
