"""The cascade's operating-point fit: the array form (chain tables, histogram sweep) gives the same
points as walking every prompt's chain and evaluating every threshold pair densely."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest

from llmroute.router import policy
from llmroute.router.cascade_policy import CascadeRule, pareto_frontier, thin
from llmroute.router.cascade_search import THRESHOLD_GRID, chain_for, sweep_thresholds, sweep_thresholds_dense
from llmroute.router.decision import Candidate
from llmroute.training import cascade_fit
from llmroute.training.cascade_fit import JUMPS, MAX_POINTS, SCORER_WEIGHTS, fit_operating_points
from llmroute.training.scorer import ResponseScorer


class HashScorer:
    """score_oof as a fixed function of each row's texts, so any batching gives the same values."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score_oof(self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str],
                  earlier: Any = None, cache: Any = None) -> np.ndarray:
        self.calls.append(len(prompts))
        keys = [f"{p}|{r}|{m}|{e}" for p, r, m, e in zip(prompts, responses, models, earlier)]
        return np.array([zlib.crc32(k.encode()) / 2**32 for k in keys])


def _problem(n: int, m: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    models = [f"model-{j}" for j in range(m)]
    return {
        "models": models,
        "prompts": [f"prompt {i}" for i in range(n)],
        "responses": np.array([[f"answer {i}/{j}" for j in range(m)] for i in range(n)], dtype=object),
        "probs": rng.random((n, m)),
        "expected_cost": np.sort(rng.random((n, m)) * 1e-3, axis=1) + np.arange(m) * 1e-4,
        "quality": (rng.random((n, m)) < np.linspace(0.3, 0.9, m)).astype(float),
        "cost": rng.random((n, m)) * 1e-3,
    }


def _reference_router_points(pb: dict[str, Any], rule: str, max_attempts: int = 3) -> tuple[np.ndarray, np.ndarray, list]:
    """The router cascade's searched points the slow way: one chain walk and one dense sweep per prompt
    and knob, Python loops over prompts (the computation the array form replaced)."""
    models, probs, ec, quality, cost = pb["models"], pb["probs"], pb["expected_cost"], pb["quality"], pb["cost"]
    n, _ = quality.shape
    col = {mod: j for j, mod in enumerate(models)}
    scorer = HashScorer()
    grid = policy.knob_grid(rule)
    firsts = np.stack([policy.choose(rule, probs, ec, np.ones_like(probs, dtype=bool), float(k))[0] for k in grid], axis=1)
    ta, tb = np.meshgrid(THRESHOLD_GRID, THRESHOLD_GRID, indexing="ij")
    qs, cs, params = [], [], []
    for (k, knob), jump in itertools.product(enumerate(grid), JUMPS):
        base = CascadeRule(thresholds=(1.0,), max_attempts=max_attempts, jump_after=jump)
        q, c, valid = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3), dtype=bool)
        pr, ps = np.zeros((n, 3)), np.zeros((n, 3))
        for i in range(n):
            cands = {mod: Candidate(mod, float(probs[i, j]), float(ec[i, j]), True, None) for mod, j in col.items()}
            ch = chain_for(base, cands, models[int(firsts[i, k])])
            for s, mod in enumerate(ch):
                j = col[mod]
                q[i, s], c[i, s], valid[i, s], pr[i, s] = quality[i, j], cost[i, j], True, probs[i, j]
                earlier = tuple((e, pb["responses"][i, col[e]]) for e in ch[:s])
                ps[i, s] = scorer.score_oof([pb["prompts"][i]], [pb["responses"][i, j]], [mod], [earlier])[0]
        for w in SCORER_WEIGHTS:
            Q, C = sweep_thresholds_dense((pr + w * ps) / (1 + w), q, c, valid)
            qs.append(Q.ravel())
            cs.append(C.ravel())
            params.extend(zip(itertools.repeat(float(knob)), itertools.repeat(w), ta.ravel(), tb.ravel(),
                              itertools.repeat(jump)))
    return np.concatenate(qs), np.concatenate(cs), params


@pytest.mark.slow  # 5-7 s each: the reference walks every prompt's chain per knob in Python
@pytest.mark.parametrize("rule", ["threshold", "utility"])
def test_router_cascade_points_match_the_per_prompt_computation(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = _problem(40, 5, seed=3)
    monkeypatch.setattr(cascade_fit, "SCORE_BATCH", 97)  # several batches: the values do not depend on them
    scorer = HashScorer()
    points = fit_operating_points(pb["models"], pb["prompts"], pb["responses"], pb["probs"], pb["expected_cost"],
                                  pb["quality"], pb["cost"], cast(ResponseScorer, scorer), rule, 0.5)
    assert len(scorer.calls) > 1 and max(scorer.calls) <= 97
    Qa, Ca, params = _reference_router_points(pb, rule)
    assert points.info["points_searched"]["cascade"] == len(Qa)
    front = thin(pareto_frontier(Ca, Qa), MAX_POINTS)
    # the same frontier; among points with equal outcomes (ties) the one kept may differ, so each kept
    # point's parameters are checked to give its outcomes in the reference computation
    assert len(points.cascade) == len(front)
    grid, T = list(policy.knob_grid(rule)), len(THRESHOLD_GRID)
    for pt, i in zip(points.cascade, front):
        assert pt.validation_quality == pytest.approx(Qa[i], abs=1e-12)
        assert pt.validation_cost == pytest.approx(Ca[i], abs=1e-12)
        block = (grid.index(pt.knob) * len(JUMPS) + JUMPS.index(pt.jump_after)) * len(SCORER_WEIGHTS) \
            + SCORER_WEIGHTS.index(pt.scorer_weight)
        at = block * T * T + list(THRESHOLD_GRID).index(pt.thresholds[0]) * T + list(THRESHOLD_GRID).index(pt.thresholds[1])
        assert params[at][:2] == (pt.knob, pt.scorer_weight) and params[at][4] == pt.jump_after
        assert Qa[at] == pytest.approx(pt.validation_quality, abs=1e-12)
        assert Ca[at] == pytest.approx(pt.validation_cost, abs=1e-12)


@pytest.mark.parametrize("S", [1, 2, 3])
def test_histogram_sweep_equals_the_dense_sweep(S: int) -> None:
    rng = np.random.default_rng(S)
    n = 300
    conf = rng.random((n, S))
    ties = rng.random((n, S)) < 0.3  # confidences exactly on grid values: ">=" must count them as reached
    conf[ties] = rng.choice(THRESHOLD_GRID, size=int(ties.sum()))
    conf[rng.random((n, S)) < 0.05] = np.nan
    quality = (rng.random((n, S)) < 0.6).astype(float)
    cost = rng.random((n, S))
    valid = rng.random((n, S)) < 0.8
    fast, dense = sweep_thresholds(conf, quality, cost, valid), sweep_thresholds_dense(conf, quality, cost, valid)
    for a, b in zip(fast, dense):
        assert a.shape == (len(THRESHOLD_GRID), len(THRESHOLD_GRID))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_histogram_sweep_rejects_long_chains() -> None:
    z = np.zeros((2, 4))
    with pytest.raises(ValueError, match="at most 3 attempts"):
        sweep_thresholds(z, z, z, z.astype(bool))


def _reference_frontier(cost: np.ndarray, quality: np.ndarray) -> list[int]:
    order = np.lexsort((-quality, cost))
    out, best = [], -np.inf
    for i in order:
        if quality[i] > best + 1e-12:
            out.append(int(i))
            best = quality[i]
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 50, 5000])
def test_pareto_frontier_prefilter_keeps_the_same_points(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(10):
        c, q = np.round(rng.random(n), 2), np.round(rng.random(n), 2)
        q[rng.random(n) < 0.2] += 1e-13  # within the tolerance of an equal point
        q[rng.random(n) < 0.05] = np.nan
        c[rng.random(n) < 0.05] = np.nan
        assert pareto_frontier(c, q) == _reference_frontier(c, q)
