"""Offline evaluation: the learned router against every baseline on held-out benchmark logs.

Every router is reduced to a matrix of choices (prompt x knob value); the realised quality and cost
of those choices on the held-out logs give its cost-quality curve, from which the measures of
shared/docs/metrics.md are computed, overall and per task, with bootstrap confidence intervals.
Only prompts whose every model has a known outcome are scored (an unknown outcome cannot be scored);
how many were left out is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmroute.data.wide import WideLogs
from llmroute.experiments import metrics as mx
from llmroute.router import policy
from llmroute.router.baselines import CheapestAdequate, SeedRules, knn, per_task_static, success
from llmroute.router.decision import QualityTarget
from llmroute.router.knobs import realised
from llmroute.router.router import Prepared, Router

TARGETS = (0.9, 0.95, 1.0)
REFERENCE = "per_task_static"  # paired AIQ differences are reported against this baseline
VERSUS_LEARNED = ("cascade", "fixed_chain", "cascade_perfect_scorer")  # also paired against the router alone


@dataclass(frozen=True)
class Curve:
    """A router's choices on the test prompts: (n, K) model indices, one column per knob value."""

    choices: np.ndarray
    knobs: tuple[float, ...]
    kind: str  # "router", "single", "oracle"
    scores: np.ndarray | None = None  # (n, m) probabilities, for scored routers
    outcome: tuple[np.ndarray, np.ndarray] | None = None  # (n, K) realised quality and cost when not the
    # chosen model's alone (a cascade pays for every attempt)


@dataclass(frozen=True)
class EvalInputs:
    router: Router
    train: WideLogs
    train_emb: np.ndarray
    train_feats: np.ndarray
    test: WideLogs
    test_prepared: Prepared
    excluded_prompts: int
    threshold: float


def build_curves(
    inp: EvalInputs, rules: SeedRules, seed: int = 0, skipped: dict[str, str] | None = None
) -> dict[str, Curve]:
    """Every router's choices on the test prompts (see module docstring). A baseline that cannot be
    computed on these logs (e.g. a seed rule naming models none of which were evaluated) is left out
    and its one-line reason put in ``skipped``."""
    skipped = skipped if skipped is not None else {}

    def attempt(name: str, make: Callable[[], Curve]) -> None:
        try:
            curves[name] = make()
        except ValueError as exc:
            skipped[name] = str(exc)

    r, test, train = inp.router, inp.test, inp.train
    n, m = test.quality.shape
    exp_cost = r.cost_model.predict(test.input_tokens)
    rule = r.default_rule
    curves: dict[str, Curve] = {}

    def scored(name: str, probs: np.ndarray, use_rule: str) -> None:
        curves[name] = Curve(
            policy.sweep(use_rule, probs, exp_cost), tuple(policy.knob_grid(use_rule)), "router", probs
        )

    p_learned, _ = r.predict(inp.test_prepared)
    scored("learned", p_learned, rule)
    for other in policy.rule_names():  # every other registered rule on the same predictions
        if other != rule:
            scored(f"learned_{other}", p_learned, other)
    if r.quality.tasks_ and any(test.tasks):
        p_hint, _ = r.predict(inp.test_prepared, list(test.tasks))
        scored("learned_task_hint", p_hint, rule)
    scored("knn", knn(inp.train_emb, train.quality, inp.test_prepared.embeddings, inp.threshold), rule)
    scored("per_task_static", per_task_static(train.quality, train.tasks, test.tasks, inp.threshold), rule)

    def cheapest_adequate() -> Curve:
        ca = CheapestAdequate(seed=seed).fit(
            np.hstack([inp.train_emb, inp.train_feats]), train.quality, np.nanmean(train.cost, axis=0), inp.threshold
        )
        probs = ca.predict(np.hstack([inp.test_prepared.embeddings, inp.test_prepared.features]))
        return Curve(policy.sweep("threshold", probs, exp_cost), tuple(policy.knob_grid("threshold")), "router", probs)

    attempt("cheapest_adequate", cheapest_adequate)

    # random mixture of the cheapest and the best single model (RouteLLM's random router)
    single_q = np.nanmean(train.quality, axis=0)
    single_c = np.nanmean(train.cost, axis=0)
    weak, strong = _pair(single_q, single_c)
    shares = np.linspace(0, 1, 21)
    u = np.random.default_rng(seed).random(n)
    curves["random"] = Curve(
        np.stack([np.where(u < s, strong, weak) for s in shares], axis=1), tuple(shares), "router"
    )

    def budget_rule() -> Curve:
        budget, budgets = rules.budget_choices(test.tasks, test.models)
        return Curve(budget, tuple(budgets), "router")

    def latency_rule() -> Curve:
        lat, lats = rules.latency_choices(n, test.models)
        return Curve(lat, tuple(lats), "router")

    attempt("seed_budget_rule", budget_rule)
    attempt("seed_task_rule", lambda: Curve(rules.task_choices(test.tasks, test.models), (0.0,), "router"))
    attempt("seed_latency_rule", latency_rule)
    for j, model in enumerate(test.models):
        curves[f"always:{model}"] = Curve(np.full((n, 1), j), (0.0,), "single")
    curves["oracle"] = Curve(_oracle(test.quality, test.cost, inp.threshold)[:, None], (0.0,), "oracle")
    return curves


def _pair(single_q: np.ndarray, single_c: np.ndarray) -> tuple[int, int]:
    """(weak, strong) for the two-model measures: strong = best quality on train; weak = the best
    model at least 10x cheaper than it (the cheapest model if none is)."""
    strong = int(np.nanargmax(single_q))
    cheap = [j for j in range(len(single_q)) if single_c[j] * 10 <= single_c[strong] and j != strong]
    weak = max(cheap, key=lambda j: single_q[j]) if cheap else int(np.nanargmin(single_c))
    return weak, strong


def _oracle(quality: np.ndarray, cost: np.ndarray, threshold: float) -> np.ndarray:
    """Per prompt the cheapest model that met the target; where none did, the cheapest model."""
    ok = success(quality, threshold) == 1.0
    c = np.where(ok, cost, np.inf)
    return np.where(ok.any(axis=1), np.argmin(c, axis=1), np.argmin(cost, axis=1))


def curve_points(test: WideLogs, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) per-prompt quality and cost of the choices."""
    rows = np.arange(len(test))[:, None]
    return test.quality[rows, choices], test.cost[rows, choices]


def outcomes(test: WideLogs, cv: Curve, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) per-prompt realised quality and cost of a curve (on ``test``, which holds ``rows`` only
    when given): its own outcome when it has one, else its choices' logged quality and cost."""
    if cv.outcome is not None:
        q, c = cv.outcome
        return (q, c) if rows is None else (q[rows], c[rows])
    return curve_points(test, cv.choices if rows is None else cv.choices[rows])


def summarise(
    test: WideLogs,
    curves: dict[str, Curve],
    router: Router,
    pair: tuple[int, int],
    n_boot: int,
    threshold: float,
) -> dict[str, Any]:
    """All measures for every curve (the ``routers`` section of report.json) plus reference figures."""
    single_q = np.nanmean(test.quality, axis=0)
    single_c = np.nanmean(test.cost, axis=0)
    best = int(np.argmax(single_q))
    q_best, c_best = float(single_q[best]), float(single_c[best])
    lo, hi = float(single_c.min()), float(single_c.max())
    floor = float(single_q[int(np.argmin(single_c))])
    weak, strong = pair

    def aiq_stat(c: np.ndarray, q: np.ndarray) -> float:
        return mx.aiq(c, q, lo, hi, q_floor=floor)

    def ratio_stat(target: float) -> Callable[[np.ndarray, np.ndarray], float | None]:
        return lambda c, q: mx.cost_ratio(c_best, mx.cost_at_quality(c, q, target))

    out: dict[str, Any] = {}
    for name, cv in curves.items():
        pq, pc = outcomes(test, cv)
        c, q = pc.mean(axis=0), pq.mean(axis=0)
        entry: dict[str, Any] = {
            "kind": cv.kind,
            "points": [[float(a), float(b)] for a, b in zip(c, q)],
            "knobs": list(cv.knobs),
            "aiq": float(aiq_stat(c, q)),
            "cost_at_parity_ratio": ratio_stat(q_best)(c, q),
            "cost_at_95_ratio": ratio_stat(0.95 * q_best)(c, q),
            "quality_at_equal_cost": mx.quality_at_cost(c, q, c_best + 1e-12),
            "max_quality": float(q.max()),
            "min_cost_per_1k": float(c.min() * 1000),
        }
        if cv.kind == "router" and len(cv.knobs) > 1:
            ci = {}
            for key, stat in (
                ("aiq", aiq_stat),
                ("cost_at_parity_ratio", ratio_stat(q_best)),
                ("cost_at_95_ratio", ratio_stat(0.95 * q_best)),
                ("quality_at_equal_cost", lambda c, q: mx.quality_at_cost(c, q, c_best + 1e-12)),
            ):
                b = mx.bootstrap_ci(pq, pc, stat, n_boot=n_boot, seed=0)
                ci[key] = {"lo": b.lo, "hi": b.hi, "undefined_share": b.none_share}
            entry["ci95"] = ci
        if cv.scores is not None:
            entry.update(_two_model(test, cv.scores, router, weak, strong))
        if name != REFERENCE and REFERENCE in curves and cv.kind == "router" and len(cv.knobs) > 1:
            rq, rc = outcomes(test, curves[REFERENCE])
            d = mx.bootstrap_diff_ci(pq, pc, rq, rc, aiq_stat, n_boot=n_boot, seed=0)
            entry[f"aiq_minus_{REFERENCE}"] = {"diff": d.point, "lo": d.lo, "hi": d.hi}
        if name in VERSUS_LEARNED and "learned" in curves:
            lq, lc = outcomes(test, curves["learned"])
            for key, stat in (("aiq", aiq_stat), ("quality_at_equal_cost",
                                                   lambda c, q: mx.quality_at_cost(c, q, c_best + 1e-12))):
                d = mx.bootstrap_diff_ci(pq, pc, lq, lc, stat, n_boot=n_boot, seed=0)
                entry[f"{key}_minus_learned"] = {"diff": d.point, "lo": d.lo, "hi": d.hi}
        out[name] = entry
    return {
        "best_single_model": test.models[best],
        "best_single_quality": q_best,
        "best_single_cost_per_1k": c_best * 1000,
        "aiq_cost_range_per_1k": [lo * 1000, hi * 1000],
        "pair": {"weak": test.models[weak], "strong": test.models[strong]},
        "routers": out,
    }


def _two_model(test: WideLogs, scores: np.ndarray, router: Router, weak: int, strong: int) -> dict[str, Any]:
    """APGR and CPT(50%/80%) of a scored router restricted to the (weak, strong) pair."""
    exp_cost = router.cost_model.predict(test.input_tokens)
    mask = np.zeros_like(scores, dtype=bool)
    mask[:, [weak, strong]] = True
    choices = np.stack(
        [policy.choose("utility", scores, exp_cost, mask, float(k))[0] for k in policy.knob_grid("utility")], axis=1
    )
    share = (choices == strong).mean(axis=0)
    q, _ = realised(test.quality, test.cost, choices)
    q_weak = float(np.mean(test.quality[:, weak]))
    q_strong = float(np.mean(test.quality[:, strong]))
    if abs(q_strong - q_weak) < 1e-9:
        return {"apgr": None, "cpt50": None, "cpt80": None}
    return {
        "apgr": mx.apgr(share, q, q_weak, q_strong),
        "cpt50": mx.cpt(share, q, q_weak, q_strong, 0.5),
        "cpt80": mx.cpt(share, q, q_weak, q_strong, 0.8),
    }


def target_attainment(
    test: WideLogs, router: Router, probs: np.ndarray, threshold: float, targets: tuple[float, ...] = TARGETS
) -> list[dict[str, Any]]:
    """For each relative target: the knob calibrated on validation data, and what it gave on test."""
    exp_cost = router.cost_model.predict(test.input_tokens)
    single_q = np.nanmean(test.quality, axis=0)
    q_best = float(single_q.max())
    c_best = float(np.nanmean(test.cost, axis=0)[int(np.argmax(single_q))])
    rows = []
    for t in targets:
        target = QualityTarget(t, "relative")
        table = router.knob_tables[router.default_rule]
        knob, reachable = table.knob_for(target)
        idx, _ = policy.choose(router.default_rule, probs, exp_cost, np.ones_like(probs, dtype=bool), knob)
        q = test.quality[np.arange(len(test)), idx]
        c = test.cost[np.arange(len(test)), idx]
        realised_q = float(q.mean())
        att = mx.target_attainment(realised_q / q_best, t)
        rows.append(
            {
                "target": f"{t:.0%} of the best model",
                "knob": knob,
                "reachable_on_validation": reachable,
                "validation_quality_goal": table.absolute(target),
                "realised_quality": realised_q,
                "realised_share_of_best": realised_q / q_best,
                "met": bool(att["met"]),
                "shortfall": float(att["shortfall"]),
                "cost_per_1k": float(c.mean() * 1000),
                "cost_ratio": mx.cost_ratio(c_best, float(c.mean())),
                "false_cheap_rate": mx.false_cheap_rate(test.quality, test.cost, idx, threshold),
                "miss_rate": mx.miss_rate(q, threshold),
            }
        )
    return rows


def per_task(test: WideLogs, curves: dict[str, Curve], names: tuple[str, ...]) -> dict[str, Any]:
    """Per task: each single model's quality/cost and the AIQ of the named routers within the task."""
    out: dict[str, Any] = {}
    tasks = np.asarray([t or "(none)" for t in test.tasks], dtype=object)
    for t in sorted(set(tasks)):
        rows = np.nonzero(tasks == t)[0]
        sub = test.subset(rows)
        sq = sub.quality.mean(axis=0)
        sc = sub.cost.mean(axis=0)
        lo, hi = float(sc.min()), float(sc.max())
        floor = float(sq[int(np.argmin(sc))])
        entry: dict[str, Any] = {
            "prompts": int(len(rows)),
            "single_models": {
                m: {"quality": float(q), "cost_per_1k": float(c * 1000)} for m, q, c in zip(test.models, sq, sc)
            },
            "aiq": {},
        }
        for name in names:
            if name not in curves:
                continue
            pq, pc = outcomes(sub, curves[name], rows)
            entry["aiq"][name] = float(mx.aiq(pc.mean(axis=0), pq.mean(axis=0), lo, hi, q_floor=floor))
        out[t] = entry
    return out
