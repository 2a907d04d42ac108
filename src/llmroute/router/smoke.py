"""Smoke-routing a router before it serves: does it load *and* route sensibly?

A router folder can load and still be unable to route: a model list that is not a list, one model's
columns missing from the quality model (a NumPy broadcast error on every request), an unknown default
rule, a NaN in the cost model (wrong picks under a cost cap). :func:`smoke_route` routes a few prompts
every way a request can (both rules and the default, each model alone, a cost cap) and checks every
number; it raises :class:`RouterSmokeError` naming the first problem.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmroute.router.decision import Constraints, Decision, RouteQuery
from llmroute.router.decision_rules import rule_names

SMOKE_PROMPTS = (
    "What is the capital of France?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train leaves at 3 pm and travels 120 km at 80 km/h. When does it arrive? Explain step by step.",
)


class RouterSmokeError(ValueError):
    """The router loaded but cannot route correctly; the message says how."""


def _check(decision: Decision, models: tuple[str, ...], what: str) -> None:
    if decision.model not in models:
        raise RouterSmokeError(f"{what}: chose {decision.model!r}, which is not one of the router's models")
    if [c.model for c in decision.candidates] != list(models):
        raise RouterSmokeError(f"{what}: the candidates are not the router's models")
    for c in decision.candidates:
        if not (math.isfinite(c.probability) and 0.0 <= c.probability <= 1.0):
            raise RouterSmokeError(f"{what}: model {c.model!r} got probability {c.probability!r} (not in [0, 1])")
        if not (math.isfinite(c.expected_cost_usd) and c.expected_cost_usd >= 0.0):
            raise RouterSmokeError(f"{what}: model {c.model!r} got expected cost {c.expected_cost_usd!r} "
                                   "(not a finite non-negative number)")
    if not math.isfinite(decision.knob):
        raise RouterSmokeError(f"{what}: the rule's knob is {decision.knob!r}")


def smoke_route(router: Any) -> int:
    """Route :data:`SMOKE_PROMPTS` with the default rule, each registered rule the router has a knob table
    for (:mod:`llmroute.router.decision_rules`), each model alone,
    and under a cost cap (the median expected cost; the pick must respect it). Each prompt is embedded
    once. Returns how many decisions were checked; raises :class:`RouterSmokeError` on the first
    problem (any exception routing raises is reported as one)."""
    from llmroute.router.router import Prepared

    models = router.models
    if not isinstance(models, tuple) or not models or not all(isinstance(m, str) and m for m in models):
        raise RouterSmokeError(f"the router's model list is not a non-empty list of names: {models!r}")
    if len(set(models)) != len(models):
        raise RouterSmokeError(f"the router's model list has duplicates: {list(models)}")
    registered = rule_names()
    if router.default_rule not in registered:
        raise RouterSmokeError(f"the router's default rule {router.default_rule!r} is not one of {registered}")
    rules = tuple(r for r in registered if r in router.knob_tables)

    def run(cases: list[tuple[str, int, RouteQuery]]) -> list[Decision]:
        rows = [i for _, i, _ in cases]
        prepared = Prepared(tuple(q.prompt for _, _, q in cases), base_prep.embeddings[rows],
                            base_prep.features[rows], base_prep.input_tokens[rows])
        out = []
        for (what, _, _), d in zip(cases, router.route_many([q for _, _, q in cases], prepared), strict=True):
            if isinstance(d, Exception):
                raise RouterSmokeError(f"{what}: {type(d).__name__}: {d}")
            _check(d, models, what)
            out.append(d)
        return out

    try:
        base_prep = router.prepare(list(SMOKE_PROMPTS), independent_rows=True)
        cases: list[tuple[str, int, RouteQuery]] = []
        for i, prompt in enumerate(SMOKE_PROMPTS):
            what = f"routing {prompt[:30]!r}"
            cases.append((f"{what} (default rule)", i, RouteQuery(prompt, Constraints())))
            cases += [(f"{what} (rule {r})", i, RouteQuery(prompt, Constraints(), rule=r)) for r in rules]
            cases += [(f"{what} (only {m!r} allowed)", i, RouteQuery(prompt, Constraints(allowed_models=(m,))))
                      for m in models]
        decisions = run(cases)
        for (what, _, q), d in zip(cases, decisions, strict=True):
            if q.constraints.allowed_models is not None and d.model != q.constraints.allowed_models[0]:
                raise RouterSmokeError(f"{what}: chose {d.model!r}")
        capped: list[tuple[str, int, RouteQuery]] = []
        for i, prompt in enumerate(SMOKE_PROMPTS):
            base = decisions[i * (1 + len(rules) + len(models))]
            costs = sorted(c.expected_cost_usd for c in base.candidates)
            cap = costs[len(costs) // 2]
            capped.append((f"routing {prompt[:30]!r} (max cost {cap:.3g})", i,
                           RouteQuery(prompt, Constraints(max_cost_usd=cap))))
        for (what, _, q), d in zip(capped, run(capped), strict=True):
            chosen = next(c for c in d.candidates if c.model == d.model)
            if q.constraints.max_cost_usd is not None and chosen.expected_cost_usd > q.constraints.max_cost_usd:
                raise RouterSmokeError(f"{what}: chose {d.model!r} with expected cost {chosen.expected_cost_usd:.3g}")
    except RouterSmokeError:
        raise
    except Exception as exc:  # any failure to route is the finding
        raise RouterSmokeError(f"routing the smoke prompts: {type(exc).__name__}: {exc}") from exc
    return len(cases) + len(capped)


class StandInEmbedder:
    """An embedder with a saved router's spec and fingerprint that returns deterministic pseudo-embeddings
    (unit vectors seeded by a hash of the text) instead of running the model: the isolated check of a
    candidate router exercises its native code (LightGBM, NumPy) without loading embedding weights.
    Its decisions mean nothing; that they can be made without an error or a non-finite number does.
    ``dim`` must be set to the router's embedding width before encoding."""

    independent_rows = True

    def __init__(self, spec: str, fingerprint: str, dim: int = 0) -> None:
        self.spec = spec
        self.fingerprint = fingerprint
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / (np.linalg.norm(v) or 1.0)
        return out
