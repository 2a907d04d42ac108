"""Why a decision served its model, and what the same prompt would have cost otherwise.

Computed once per decision on the compute thread and logged with it (``DecisionRecord.reason_kind``,
``best_cost_usd``, ``seed_cost_usd``), so the dashboard's savings are sums in the database:

* **best single model**: the expected cost of the prompt on the model with the best mean quality on
  the router's validation data (``KnobTable.best_single_model`` of its default rule), from the
  router's own cost model (catalog prices x counted prompt tokens + expected output tokens);
* **seed budget rule**: the expected cost of the model the seed guide's ``select_model_by_budget``
  picks for the request (its ``max_cost_usd``, else ``dashboard_seed_budget_usd``; the task hint's
  complexity), mapped to the router's models like the A/B ``rules: budget`` arm does.

Either is None when the model is not one of the decision's candidates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from llmroute.abtest.arms import RulesPolicy
from llmroute.abtest.experiment import RulesArm
from llmroute.router.baselines import SeedRules
from llmroute.router.decision import Decision, RouteQuery
from llmroute.router.router import Router


@dataclass(frozen=True)
class Counterfactual:
    reason_kind: str
    best_cost_usd: float | None
    seed_cost_usd: float | None


@functools.cache
def _seed_rules() -> SeedRules:
    return SeedRules.load()


def reason_kind(decision: Decision) -> str:
    """One of ``llmroute.data.decision_log.records.REASON_KINDS`` (first that applies: explored,
    static, fallback, constraint, router)."""
    if decision.extra.get("explored"):
        return "explored"
    if decision.rule.startswith("static:"):
        return "static"
    if not decision.cleared:
        return "fallback"
    chosen = next((c.expected_cost_usd for c in decision.candidates if c.model == decision.model), None)
    if chosen is not None and any(not c.eligible and c.expected_cost_usd < chosen for c in decision.candidates):
        return "constraint"
    return "router"


def best_single_model(router: Router) -> str | None:
    table = router.knob_tables.get(router.default_rule) or next(iter(router.knob_tables.values()), None)
    return None if table is None else table.best_single_model


def counterfactual(router: Router, decision: Decision, query: RouteQuery, seed_budget_usd: float) -> Counterfactual:
    """The reason kind and counterfactual costs of ``decision`` (made for ``query``; see the module docstring)."""
    costs = {c.model: c.expected_cost_usd for c in decision.candidates}
    best = best_single_model(router)
    seed_cost = None
    try:
        policy = RulesPolicy(RulesArm("budget", budget_usd=seed_budget_usd), _seed_rules(), tuple(router.models))
        seed_model, _, _ = policy.choose(query)
        seed_cost = costs.get(seed_model)
    except ValueError:  # the rule's model maps to none of the router's models
        seed_cost = None
    return Counterfactual(reason_kind(decision), costs.get(best) if best else None, seed_cost)
