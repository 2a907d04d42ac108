"""One routing decision for a request (blocking CPU work: call from a sync route or a thread pool)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmroute.abtest.arms import Policy
from llmroute.abtest.assignment import Assignment
from llmroute.data.decision_log import DecisionRecord
from llmroute.data.decision_log.records import new_decision_id
from llmroute.router.data_policy import strictest
from llmroute.router.decision import Constraints, Decision, NoEligibleModelError, RouteQuery
from llmroute.router.router import Router
from llmroute.serving.counterfactuals import counterfactual
from llmroute.serving.decision_logging import decision_record, embedder_spec
from llmroute.serving.errors import ServiceError
from llmroute.serving.exploration import Explorer, explore
from llmroute.serving.schemas import RoutingOptions
from llmroute.serving.state import Services


def request_constraints(services: Services, router: Router, opts: RoutingOptions) -> Constraints:
    """The constraints a request is routed under: its own, with the data policy in force (the strictest
    of the request's and its tenant's, :func:`~llmroute.router.data_policy.strictest`) and the models
    that are unavailable right now (open circuit breaker, spent rate limit; see
    :mod:`llmroute.serving.health`). Computed once per request: routing, exploration, A/B arms, the
    cascade and ensembles all draw from the eligibility these give."""
    base = opts.constraints()
    policy = strictest(services.settings.data_policy_for(opts.tenant), opts.data_policy)
    down = services.health.unavailable(router.specs)
    return dataclasses.replace(base, data_policy=policy, unavailable=tuple(sorted(down.items())))


def decide(
    services: Services, router: Router, prompt: str, opts: RoutingOptions, policy: Policy | None = None,
    knob: float | None = None,
    constraints: Constraints | None = None,
) -> Decision:
    """Route ``prompt`` (with an experiment arm's ``policy`` when given); NoEligibleModelError passes
    through, other ValueErrors become 422.

    Concurrent calls for the same router are routed together (:mod:`llmroute.serving.batching`), also
    when an arm's policy asks a router; each gets the decision it would get alone, carrying the
    embedding it was made with (``Decision.embedding``) for the decision log."""
    services.compute.apply()
    try:
        cons = constraints if constraints is not None else opts.constraints()
        query = RouteQuery(prompt, cons, opts.quality_target(), opts.confidence, opts.task, opts.rule, knob)
        batched = services.batchers.route
        decision = batched(router, query) if policy is None else policy.route(query, batched)
    except NoEligibleModelError:
        raise
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", str(exc)) from exc
    services.metrics.routed.labels(decision.model).inc()
    return decision


def choose(
    decision: Decision, share: float = 0.0, explorer: Explorer | None = None, mode: str = "uniform", top_k: int = 2
) -> tuple[Decision, float]:
    """The logging policy: the decision the service acts on and the probability it had of being made.

    The one place where the propensity is decided. With exploration ``share`` 0 (the default) the
    router's choice is always taken (propensity 1.0); otherwise :func:`~llmroute.serving.exploration.explore`
    may replace the chosen model by one of the exploration set of ``mode`` (every other eligible model,
    or the router's ``top_k`` runner-ups; marked ``extra["explored"]``) and returns the served model's
    probability: ``1 - share`` for the router's pick, ``share / k`` for an explored one (``k`` the set's size).
    """
    if share <= 0.0:
        return decision, 1.0
    return explore(decision, share, explorer if explorer is not None else Explorer(), mode, top_k)


@dataclass(frozen=True)
class Routed:
    """A decision as served: its id (returned to the client), and its log record (None when logging is off)."""

    decision_id: str
    decision: Decision
    propensity: float
    record: DecisionRecord | None
    assignment: Assignment | None = None  # the A/B arm, when an experiment runs
    constraints: Constraints | None = None  # what it was routed under (data policy, unavailable models)

    @property
    def data_policy(self) -> str:
        return self.constraints.data_policy if self.constraints is not None else "any"

    @property
    def experiment(self) -> str | None:
        return self.assignment.experiment if self.assignment is not None else None

    @property
    def arm(self) -> str | None:
        return self.assignment.served if self.assignment is not None else None

    def expected_cost(self) -> float:
        """The served model's expected cost at decision time (0 when it is not among the candidates)."""
        return next((c.expected_cost_usd for c in self.decision.candidates if c.model == self.decision.model), 0.0)


def route_request(
    services: Services, router: Router, prompt: str, opts: RoutingOptions, source: str,
    started: float | None = None, knob: float | None = None,
    adjust: Callable[[Decision], Decision] | None = None, pinned: str | None = None,
) -> Routed:
    """:func:`decide`, :func:`choose`, and the decision's log record, all in the calling (compute) thread.

    With an experiment (``services.experiment``) the request's arm is assigned first and its policy
    routes; the arm is counted by the guardrails (at the expected cost; chat corrects it to the
    realised cost) and logged as ``"<experiment>:<arm>"`` (see :mod:`llmroute.abtest.assignment`).
    ``started`` (``time.perf_counter()`` when the request arrived) makes the record carry the time
    taken to decide; the record also carries the reason kind and counterfactual costs
    (:mod:`llmroute.serving.counterfactuals`). ``knob``: the rule's knob to route with instead of the
    target's (a cascade operating point's). ``adjust`` rewrites the router's decision before
    exploration and logging (the budgets' explanation,
    :meth:`llmroute.serving.budget_control.Admission.explain`).

    ``pinned``: the request named this model of the router (its catalog name): the decision is the
    router's under the request's constraints (budgets' included) with only that model allowed, so every
    limit still applies and the decision is logged as usual; never explored, never part of an experiment."""
    if pinned is not None:
        allowed = [pinned] if opts.allowed_models is None or pinned in opts.allowed_models else []
        opts = opts.model_copy(update={"allowed_models": allowed})
    live = services.experiment if pinned is None else None
    assignment = live.assign(opts.user, opts.tenant, opts.session) if live is not None else None
    policy = live.policy(assignment.served, router) if live is not None and assignment is not None else None
    used = policy.embedding_router if policy is not None else router
    settings = services.settings
    constraints = request_constraints(services, router, opts)
    services.metrics.data_policy_decisions.labels(constraints.data_policy).inc()
    decided = decide(services, router, prompt, opts, policy, knob, constraints)
    embedding = decided.embedding  # the row the prompt was routed with, whatever rewrites the decision below
    if adjust is not None:
        decided = adjust(decided)
    decision, propensity = choose(
        decided, settings.exploration_share_for(opts.tenant) if pinned is None else 0.0,
        services.explorer, settings.exploration_mode_for(opts.tenant), settings.exploration_top_k,
    )
    if pinned is not None:
        decision = dataclasses.replace(decision, reason=f"pinned: the request named model {pinned}")
    if decision.extra.get("explored"):
        services.metrics.explored.labels(decision.model).inc()
    decision_id = new_decision_id()
    record = None
    if services.decision_log is not None:
        record = decision_record(
            decision, decision_id=decision_id, prompt=prompt, constraints=constraints,
            embedding=embedding,
            embedder=embedder_spec(used) if used is not None else None,
            tenant=opts.tenant, user=opts.user, propensity=propensity, source=source,
            redact=services.settings.redact_prompts, arm=assignment.label if assignment is not None else None,
        )
        query = RouteQuery(prompt, constraints, opts.quality_target(), opts.confidence, opts.task, opts.rule)
        cf = counterfactual(router, decision, query, settings.dashboard_seed_budget_usd)
        record = dataclasses.replace(
            record, reason_kind=cf.reason_kind, best_cost_usd=cf.best_cost_usd, seed_cost_usd=cf.seed_cost_usd,
            latency_ms=None if started is None else (time.perf_counter() - started) * 1000.0,
        )
    routed = Routed(decision_id, decision, propensity, record, assignment, constraints)
    if live is not None and assignment is not None:
        live.monitor.observe_request(assignment.served, routed.expected_cost())
    return routed
