"""Head-to-head comparison of two routers on the same held-out logs (the promotion gate's evidence).

A light version of the full evaluation (:mod:`llmroute.experiments.report`): no baselines, no
bootstrap, two measures per router:

* **AIQ** of the router's *default rule* swept over its knob grid (:func:`llmroute.router.policy.sweep`
  over :meth:`Router.predict`): the realised (mean cost, mean quality) points on the test logs, integrated
  over the cost range from the cheapest to the most expensive single model of those logs, with the
  cheapest model's quality as the floor (the same convention as report.json).
* **Target attainment** at the router's *default target*: the knob that validation data calibrated
  for that target, applied to the test prompts; the realised mean quality against the target
  (relative targets: a share of the best single model's quality on the test logs).

Both routers are scored on the same prompts: those whose outcome is known for every model of either
router.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmroute.data.importers import read_logs
from llmroute.data.wide import WideLogs, to_wide
from llmroute.experiments import metrics as mx
from llmroute.experiments.evaluate import curve_points, target_attainment
from llmroute.router import policy
from llmroute.router.embedder import EmbeddingCache
from llmroute.router.router import Router
from llmroute.router.text import focus_text

_TOL = 1e-12


@dataclass(frozen=True)
class RouterScore:
    """What one router achieved on the shared held-out prompts."""

    label: str
    router_version: str
    aiq: float
    target: str
    realised_quality: float
    target_quality: float
    met: bool
    shortfall: float
    cost_per_1k: float


@dataclass(frozen=True)
class Comparison:
    """Scores of two routers on the same prompts, and the gate's verdict for ``challenger``."""

    test_logs: str
    prompts: int
    champion: RouterScore | None
    challenger: RouterScore

    @property
    def aiq_better(self) -> bool:
        return self.champion is None or self.challenger.aiq > self.champion.aiq + _TOL

    @property
    def attainment_not_worse(self) -> bool:
        """The challenger meets its default target, or falls short of it by no more than the champion."""
        if self.champion is None or self.challenger.met:
            return True
        return self.challenger.shortfall <= self.champion.shortfall + _TOL

    @property
    def challenger_wins(self) -> bool:
        return self.aiq_better and self.attainment_not_worse

    def table(self) -> str:
        """Both routers side by side, as plain text."""
        cols = [s for s in (self.champion, self.challenger) if s is not None]
        rows = [
            ("", [s.label for s in cols]),
            ("router version", [s.router_version for s in cols]),
            ("AIQ", [f"{s.aiq:.4f}" for s in cols]),
            ("default target", [s.target for s in cols]),
            ("target quality", [f"{s.target_quality:.4f}" for s in cols]),
            ("realised quality", [f"{s.realised_quality:.4f}" for s in cols]),
            ("target met", ["yes" if s.met else f"no (short by {s.shortfall:.4f})" for s in cols]),
            ("$ per 1,000 queries", [f"{s.cost_per_1k:.3f}" for s in cols]),
        ]
        width = max(len(r[0]) for r in rows) + 2
        colw = max(len(v) for _, vals in rows for v in vals) + 2
        lines = [f"{name:<{width}}" + "".join(f"{v:>{colw}}" for v in vals) for name, vals in rows]
        lines.append(f"({self.prompts} held-out prompts from {self.test_logs})")
        return "\n".join(lines)


def shared_test_logs(test_path: Path, routers: list[Router]) -> WideLogs:
    """The test logs restricted to the prompts every router can be scored on (all outcomes known)."""
    models = tuple(sorted({m for r in routers for m in r.models}))
    test, _ = to_wide(read_logs(test_path)).restrict(models).complete()
    if len(test) == 0:
        raise ValueError(f"{test_path}: no prompt has a known outcome for every model of the routers compared")
    return test


def score_router(router: Router, label: str, test: WideLogs, cache: EmbeddingCache | None = None) -> RouterScore:
    """AIQ and default-target attainment of ``router`` on ``test`` (see module docstring)."""
    single_q = test.quality.mean(axis=0)
    single_c = test.cost.mean(axis=0)
    lo, hi = float(single_c.min()), float(single_c.max())
    floor = float(single_q[int(np.argmin(single_c))])
    sub = test.restrict(router.models)
    focus = [focus_text(p) for p in sub.prompts]
    emb = cache.encode(router.embedder, focus, progress=False) if cache else None
    prepared = router.prepare(list(sub.prompts), embeddings=emb)
    probs, _ = router.predict(prepared)
    exp_cost = router.cost_model.predict(sub.input_tokens)
    pq, pc = curve_points(sub, policy.sweep(router.default_rule, probs, exp_cost))
    aiq = float(mx.aiq(pc.mean(axis=0), pq.mean(axis=0), lo, hi, q_floor=floor)) if hi > lo else float(pq.mean())
    target = router.default_target
    threshold = router.info.success_threshold
    threshold = float(router.quality.params.target if threshold is None else threshold)
    if target.kind == "relative":
        # the best single model is taken over the router's own models, as in the full evaluation
        row = target_attainment(sub, router, probs, threshold, (target.value,))[0]
        q_best = float(sub.quality.mean(axis=0).max())
        realised, goal, cost_1k = row["realised_quality"], target.value * q_best, row["cost_per_1k"]
    else:
        knob, _ = router.knob_tables[router.default_rule].knob_for(target)
        idx, _ = policy.choose(router.default_rule, probs, exp_cost, np.ones_like(probs, dtype=bool), knob)
        rows = np.arange(len(sub))
        realised, goal = float(sub.quality[rows, idx].mean()), target.value
        cost_1k = float(sub.cost[rows, idx].mean() * 1000)
    att = mx.target_attainment(realised, goal)
    return RouterScore(
        label=label,
        router_version=router.version,
        aiq=aiq,
        target=str(target),
        realised_quality=float(realised),
        target_quality=float(goal),
        met=bool(att["met"]),
        shortfall=float(att["shortfall"]),
        cost_per_1k=float(cost_1k),
    )


def compare_routers(
    challenger: Router,
    champion: Router | None,
    test_path: Path,
    cache_path: Path | None = None,
    labels: tuple[str, str] = ("champion", "challenger"),
) -> Comparison:
    """Score ``challenger`` (and ``champion``, when there is one) on the same prompts of ``test_path``."""
    routers = [r for r in (champion, challenger) if r is not None]
    test = shared_test_logs(test_path, routers)
    cache = EmbeddingCache(cache_path) if cache_path else None
    return Comparison(
        test_logs=str(test_path),
        prompts=len(test),
        champion=score_router(champion, labels[0], test, cache) if champion is not None else None,
        challenger=score_router(challenger, labels[1], test, cache),
    )
