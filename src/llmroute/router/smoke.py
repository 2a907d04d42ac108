"""Smoke-routing a router before it serves: does it load *and* route sensibly?

A router folder can load and still be unable to route: a model list that is not a list, one model's
columns missing from the quality model (a NumPy broadcast error on every request), an unknown default
rule, a NaN in the cost model (wrong picks under a cost cap). :func:`smoke_route` routes a few prompts
every way a request can (both rules and the default, each model alone, a cost cap) and checks every
number; it raises :class:`RouterSmokeError` naming the first problem.
"""

from __future__ import annotations

import math
from typing import Any

from llmroute.router.decision import Constraints, Decision
from llmroute.router.policy import RULES

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
    """Route :data:`SMOKE_PROMPTS` with the default rule, each rule in :data:`RULES`, each model alone,
    and under a cost cap (the median expected cost; the pick must respect it). Returns how many
    decisions were checked; raises :class:`RouterSmokeError` on the first problem (any exception a
    route raises is reported as one)."""
    models = router.models
    if not isinstance(models, tuple) or not models or not all(isinstance(m, str) and m for m in models):
        raise RouterSmokeError(f"the router's model list is not a non-empty list of names: {models!r}")
    if len(set(models)) != len(models):
        raise RouterSmokeError(f"the router's model list has duplicates: {list(models)}")
    if router.default_rule not in RULES:
        raise RouterSmokeError(f"the router's default rule {router.default_rule!r} is not one of {RULES}")
    checked = 0
    for prompt in SMOKE_PROMPTS:
        what = f"routing {prompt[:30]!r}"
        try:
            base = router.route(prompt)
            _check(base, models, f"{what} (default rule)")
            for rule in RULES:
                _check(router.route(prompt, rule=rule), models, f"{what} (rule {rule})")
            for m in models:
                d = router.route(prompt, constraints=Constraints(allowed_models=(m,)))
                _check(d, models, f"{what} (only {m!r} allowed)")
                if d.model != m:
                    raise RouterSmokeError(f"{what}: with only {m!r} allowed it chose {d.model!r}")
            costs = sorted(c.expected_cost_usd for c in base.candidates)
            cap = costs[len(costs) // 2]
            d = router.route(prompt, constraints=Constraints(max_cost_usd=cap))
            _check(d, models, f"{what} (max cost {cap:.3g})")
            chosen = next(c for c in d.candidates if c.model == d.model)
            if chosen.expected_cost_usd > cap:
                raise RouterSmokeError(f"{what}: under max cost {cap:.3g} it chose {d.model!r}, expected cost "
                                       f"{chosen.expected_cost_usd:.3g}")
        except RouterSmokeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to route is the finding
            raise RouterSmokeError(f"{what}: {type(exc).__name__}: {exc}") from exc
        checked += 4 + len(models)
    return checked
