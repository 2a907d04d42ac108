"""Offline cascade evaluation: replay the logged answers of held-out prompts through the served cascade.

Every attempt is decided by :class:`llmroute.router.cascade_policy.CascadeWalk` -- the code the service
runs -- with the answer an attempt would have got taken from the logs: first attempt = the router's
pick at the operating point's knob, confidence = the served combination of the router probability and
the answer scorer's probability (:meth:`llmroute.router.answer_scorer.ResponseScorer.score`, which sees
the earlier attempts' answers only), escalation and delivery by the served rule. Per prompt: cost = the
logged cost of every attempt; quality = the delivered answer's logged quality; latency = the sum of the
attempts' logged latencies (unknown when not logged); wasted spend = the cost of the answers not
delivered; a false accept = a delivered answer below the success threshold.

Rows (curves over the operating points fitted out-of-fold on the training logs, never on the test
split; at most :data:`MAX_EVAL_POINTS` of them, evenly spaced along the frontier): ``cascade`` (router + scorer), ``fixed_chain`` (FrugalGPT-style cheapest-first chain with
per-attempt thresholds, scorer only) and ``cascade_perfect_scorer``, the measured ceiling of the router
cascade: the same chains with an oracle that accepts exactly the answers meeting the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from llmroute.router import policy
from llmroute.router.answer_scorer import ResponseScorer
from llmroute.router.cascade_policy import CascadeRule, CascadeWalk, OperatingPoint, OperatingPoints, thin
from llmroute.router.cascade_search import chain_for
from llmroute.router.decision import Candidate, QualityTarget
from llmroute.router.embedder import EmbeddingCache

Cell = tuple[int, str, tuple[str, ...]]  # (prompt row, model, models answered before it)
MAX_EVAL_POINTS = 120  # operating points replayed per row (evenly spaced along the validation frontier)


@dataclass(frozen=True)
class CascadeInputs:
    """Held-out prompts with every model's logged quality, cost and answer ((n, m) arrays)."""

    models: tuple[str, ...]
    prompts: tuple[str, ...]
    tasks: tuple[str | None, ...]
    answers: np.ndarray  # object
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray  # NaN where not logged
    probs: np.ndarray  # the router's probabilities
    expected_cost: np.ndarray
    threshold: float


@dataclass(frozen=True)
class Replayed:
    """(n, K) per-prompt outcomes of K operating points."""

    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    attempts: np.ndarray
    wasted: np.ndarray
    delivered: np.ndarray  # model index of the delivered answer

    def stats(self, k: int, threshold: float) -> dict[str, Any]:
        lat = self.latency[:, k]
        total = float(self.cost[:, k].sum())
        return {
            "quality": float(self.quality[:, k].mean()),
            "cost_per_1k": float(self.cost[:, k].mean() * 1000),
            "escalation_rate": float((self.attempts[:, k] > 1).mean()),
            "mean_attempts": float(self.attempts[:, k].mean()),
            "wasted_spend_share": float(self.wasted[:, k].sum() / total) if total > 0 else 0.0,
            "wasted_per_1k": float(self.wasted[:, k].mean() * 1000),
            "false_accept_rate": float((self.quality[:, k] < threshold - 1e-9).mean()),
            "latency_ms": None if np.isnan(lat).any() else float(lat.mean()),
        }


class ScoreBook:
    """Scorer probabilities of cells, computed in batches with :meth:`ResponseScorer.score`."""

    def __init__(self, scorer: ResponseScorer, inp: CascadeInputs, cache: EmbeddingCache | None) -> None:
        self.scorer, self.inp, self.cache = scorer, inp, cache
        self.col = {m: j for j, m in enumerate(inp.models)}
        self.values: dict[Cell, float] = {}

    def need(self, cells: set[Cell]) -> None:
        todo = [c for c in cells if c not in self.values]
        if not todo:
            return
        a = self.inp.answers
        p = self.scorer.score(
            [self.inp.prompts[i] for i, _, _ in todo],
            [str(a[i, self.col[m]]) for i, m, _ in todo],
            [m for _, m, _ in todo],
            [[(e, str(a[i, self.col[e]])) for e in prev] for i, _, prev in todo],
            self.cache,
        )
        self.values.update(zip(todo, p.tolist()))


def _candidates(inp: CascadeInputs, i: int) -> dict[str, Candidate]:
    return {m: Candidate(m, float(inp.probs[i, j]), float(inp.expected_cost[i, j]), True, None)
            for j, m in enumerate(inp.models)}


def first_models(inp: CascadeInputs, rule: str, knob: float) -> np.ndarray:
    """The router's pick per prompt at ``knob`` (no constraints: every model eligible)."""
    return policy.choose(rule, inp.probs, inp.expected_cost, np.ones_like(inp.probs, dtype=bool), knob)[0]


def replay(
    inp: CascadeInputs, points: Sequence[OperatingPoint], book: ScoreBook | None, oracle: bool = False,
    record: set[Cell] | None = None,
) -> Replayed:
    """Walk every prompt through every point's cascade (see module docstring). ``oracle``: confidence =
    1 when the answer meets the target, else 0 (the perfect-scorer ceiling; ``book`` unused).
    ``record``: collects every attempt made, as the cell it was scored as."""
    n, K = len(inp.prompts), len(points)
    col = {m: j for j, m in enumerate(inp.models)}
    cands = [_candidates(inp, i) for i in range(n)]
    firsts = [first_models(inp, p.rule, p.knob) if p.chain is None else None for p in points]
    if book is not None and not oracle:
        # the chains do not depend on the thresholds: score every cell they can reach, once
        chains: set[tuple[int, str, tuple[str, ...] | None, int | None, int]] = set()
        for p, f in zip(points, firsts):
            chains.update((i, inp.models[f[i]] if f is not None else "", p.chain, p.jump_after, p.max_attempts)
                          for i in range(n))
        cells: set[Cell] = set()
        for i, first, chain, jump, attempts in chains:
            ch = chain_for(CascadeRule((1.0,), attempts, chain=chain, jump_after=jump), cands[i], first)
            cells.update((i, m, ch[:s]) for s, m in enumerate(ch))
        book.need(cells)
    out = {k: np.zeros((n, K)) for k in ("quality", "cost", "latency", "attempts", "wasted", "delivered")}
    for k, (p, f) in enumerate(zip(points, firsts)):
        rule = p.cascade_rule()
        for i in range(n):
            walk = CascadeWalk(rule, cands[i], inp.models[f[i]] if f is not None else "")
            tried: list[str] = []
            while (m := walk.next()) is not None:
                j = col[m]
                if oracle:
                    conf = float(inp.quality[i, j] >= inp.threshold - 1e-9)
                else:
                    assert book is not None
                    conf = rule.confidence(float(inp.probs[i, j]), book.values[(i, m, tuple(tried))], None)
                walk.answered(m, conf)
                if record is not None:
                    record.add((i, m, tuple(tried)))
                tried.append(m)
            d = walk.delivered
            assert d is not None  # offline no call fails
            js = [col[m] for m in tried]
            dj = js[d]
            spent = inp.cost[i, js]
            out["quality"][i, k] = inp.quality[i, dj]
            out["cost"][i, k] = spent.sum()
            out["latency"][i, k] = inp.latency[i, js].sum()
            out["attempts"][i, k] = len(js)
            out["wasted"][i, k] = spent.sum() - inp.cost[i, dj]
            out["delivered"][i, k] = dj
    return Replayed(out["quality"], out["cost"], out["latency"], out["attempts"].astype(int), out["wasted"],
                    out["delivered"].astype(int))


def perfect_scorer_points(rule: str, max_attempts: int, every: int = 3) -> list[OperatingPoint]:
    """The router cascade's ceiling: every ``every``-th knob of ``rule`` (and the last), confidence =
    the oracle's (scorer only), the climbing order."""
    grid = policy.knob_grid(rule)
    knobs = [*grid[::every], *([grid[-1]] if (len(grid) - 1) % every else [])]
    return [OperatingPoint(rule, float(k), 1.0, 0.0, (0.5,), max_attempts, float("nan"), float("nan")) for k in knobs]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (ties count one half): the rank-sum (Mann-Whitney) form, for the bootstrap's speed."""
    pos = y.astype(bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def target_rows(
    inp: CascadeInputs, ops: OperatingPoints, book: ScoreBook, targets: Sequence[float], q_best: float, c_best: float
) -> list[dict[str, Any]]:
    """For each relative target: the operating point calibrated on validation and what it gave on test."""
    rows = []
    for t in targets:
        target = QualityTarget(t, "relative")
        point, reachable = ops.point_for(target)
        r = replay(inp, [point], book)
        s = r.stats(0, inp.threshold)
        share = s["quality"] / q_best
        rows.append({
            "target": f"{t:.0%} of the best model",
            "operating_point": point.to_dict(),
            "reachable_on_validation": reachable,
            "validation_quality_goal": ops.absolute(target),
            "realised_quality": s["quality"],
            "realised_share_of_best": share,
            "met": bool(share >= t - 1e-9),
            "shortfall": float(max(0.0, t - share)),
            "cost_ratio": (c_best / (s["cost_per_1k"] / 1000)) if s["cost_per_1k"] > 0 else None,
            **{k: v for k, v in s.items() if k != "quality"},
        })
    return rows


def scorer_auc(
    inp: CascadeInputs, book: ScoreBook, cells: set[Cell] | None, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Held-out AUC of the scorer with a 95% bootstrap interval over prompts, overall and per task.

    ``cells`` None: every (prompt, model) answer scored alone (no earlier answers); otherwise those
    cells (e.g. every attempt the cascade made, see :func:`replay`), each scored with its earlier answers."""
    col = {m: j for j, m in enumerate(inp.models)}
    if cells is None:
        cells = {(i, m, ()) for i in range(len(inp.prompts)) for m in inp.models}
        book.need(cells)
    ordered = sorted(cells, key=lambda c: (c[0], c[1], c[2]))
    rows = np.array([c[0] for c in ordered])
    p = np.array([book.values[c] for c in ordered])
    y = np.array([inp.quality[i, col[m]] >= inp.threshold - 1e-9 for i, m, _ in ordered])
    tasks = np.array([inp.tasks[i] or "(none)" for i in rows], dtype=object)

    def auc_ci(mask: np.ndarray) -> dict[str, Any]:
        yy, pp, rr = y[mask], p[mask], rows[mask]
        if len(np.unique(yy)) < 2:
            return {"auc": None, "lo": None, "hi": None, "answers": int(mask.sum())}
        uniq = np.unique(rr)
        by = {r: np.nonzero(rr == r)[0] for r in uniq}
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_boot):
            idx = np.concatenate([by[r] for r in rng.choice(uniq, size=len(uniq), replace=True)])
            if len(np.unique(yy[idx])) > 1:
                vals.append(auc(yy[idx], pp[idx]))
        lo, hi = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (None, None)
        return {"auc": auc(yy, pp), "lo": lo, "hi": hi, "answers": int(mask.sum()),
                "prompts": int(len(uniq))}

    out: dict[str, Any] = {"all": auc_ci(np.ones(len(y), dtype=bool)), "per_task": {}}
    for t in sorted(set(tasks)):
        out["per_task"][t] = auc_ci(tasks == t)
    return out


@dataclass(frozen=True)
class CascadeCurve:
    """A cascade row for the evaluation: per-prompt outcomes of its points and the points' stats."""

    name: str
    points: tuple[OperatingPoint, ...]
    replayed: Replayed


def evaluate_cascades(
    inp: CascadeInputs,
    scorer: ResponseScorer,
    ops: OperatingPoints,
    cache: EmbeddingCache | None,
    targets: Sequence[float],
    q_best: float,
    c_best: float,
    n_boot_auc: int = 200,
) -> tuple[list[CascadeCurve], dict[str, Any]]:
    """The cascade rows (see module docstring) and the report's ``cascade`` section: the operating points'
    test statistics, the target attainment of the cascade, and the scorer's held-out AUC."""
    print(f"replaying the cascade on {len(inp.prompts)} prompts: {min(len(ops.cascade), MAX_EVAL_POINTS)} router-cascade "
          f"and {min(len(ops.fixed_chain), MAX_EVAL_POINTS)} fixed-chain operating points, the perfect-scorer ceiling, "
          "and the scorer's AUC", flush=True)
    book = ScoreBook(scorer, inp, cache)
    made: set[Cell] = set()
    curves: list[CascadeCurve] = []
    points = tuple(thin(ops.cascade, MAX_EVAL_POINTS))
    curves.append(CascadeCurve("cascade", points, replay(inp, points, book, record=made)))
    if ops.fixed_chain:
        fixed = tuple(thin(ops.fixed_chain, MAX_EVAL_POINTS))
        curves.append(CascadeCurve("fixed_chain", fixed, replay(inp, fixed, book)))
    max_attempts = ops.cascade[0].max_attempts
    ceiling = perfect_scorer_points(ops.cascade[0].rule, max_attempts)
    curves.append(CascadeCurve("cascade_perfect_scorer", tuple(ceiling), replay(inp, ceiling, None, oracle=True)))
    section: dict[str, Any] = {
        "prompts": len(inp.prompts),
        "operating_points": {
            c.name: [{**(p.to_dict() if c.name != "cascade_perfect_scorer" else {"knob": p.knob}),
                      "test": c.replayed.stats(k, inp.threshold)} for k, p in enumerate(c.points)]
            for c in curves
        },
        "target_attainment": target_rows(inp, ops, book, targets, q_best, c_best),
        "scorer_auc": {
            "alone": scorer_auc(inp, book, None, n_boot_auc),
            "cascade_attempts": scorer_auc(inp, book, made, n_boot_auc),
            "bootstrap_resamples": n_boot_auc,
        },
        "fitted_on": ops.info,
    }
    return curves, section
