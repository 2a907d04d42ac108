"""An arm's policy: what model a request gets under that arm, as a ``router.decision.Decision``.

Three kinds, one interface (:class:`Policy`):

* :class:`RouterPolicy`: a trained router (``Router.route``, nothing changed).
* :class:`RulesPolicy`: the seed guide's static rules (:class:`llmroute.router.baselines.SeedRules`),
  per request: **budget** uses the request's ``max_cost_usd`` (else the arm's ``budget_usd``) and the
  task's complexity from the request's ``task`` hint (no hint: the rules' default complexity);
  **task** uses the ``task`` hint (no hint: the rule's default model); **latency** uses
  ``max_latency_ms`` (else the arm's ``latency_ms``).
* :class:`AlwaysPolicy`: one model for every request.

Static policies do not need a learned router. When they are given one (``reference``, the service's
served router), it routes the same prompt first and its candidates (probabilities, expected costs,
eligibility under the request's constraints) are attached to the static decision, so the decision
log and the cascade treat every arm alike; the static choice replaces the router's. If the request's
constraints exclude the static choice (an allow/deny list, a capability, the context window), the
reference router's choice is served instead and the reason says so. Without a reference the decision
lists only the chosen model (probability 1.0, expected cost 0: unknown).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from llmroute.abtest.experiment import Arm, Experiment, RulesArm
from llmroute.artifacts.loading import load_router
from llmroute.config import Settings
from llmroute.router.baselines import SeedRules
from llmroute.router.decision import Candidate, Decision, RouteQuery
from llmroute.router.router import Router


class Policy(Protocol):
    """Routes one request for an arm."""

    @property
    def embedding_router(self) -> Router | None:
        """The router whose embedder embedded the prompt during :meth:`route` (None if none did)."""
        ...

    def route(self, call: RouteQuery, route: RouteFn = ...) -> Decision: ...


RouteFn = Callable[[Router, RouteQuery], Decision]
"""How a policy asks a router for a decision: directly (the default), or through the service's
micro-batching (:func:`llmroute.serving.decide.decide` passes one)."""


@dataclass(frozen=True)
class RouterPolicy:
    router: Router

    @property
    def embedding_router(self) -> Router | None:
        return self.router

    def route(self, call: RouteQuery, route: RouteFn = Router.route_query) -> Decision:
        return route(self.router, call)


def _static(
    model: str, version: str, rule: str, knob: float, why: str, call: RouteQuery, reference: Router | None,
    route: RouteFn = Router.route_query,
) -> Decision:
    if reference is None:
        return Decision(
            model=model, candidates=(Candidate(model, 1.0, 0.0, True, None),), reason=why, cleared=True,
            rule=rule, knob=knob, router_version=version, task_hint=call.task,
        )
    routed = route(reference, call)
    names = {c.model: c for c in routed.candidates}
    chosen = names.get(model)
    if chosen is None:
        raise ValueError(
            f"{version}: the static choice {model!r} is not a model of the reference router "
            f"{reference.version} (models: {', '.join(reference.models)})"
        )
    if not chosen.eligible:
        why = (f"{why}; but the request's constraints exclude {model} ({chosen.excluded_by}), so the reference "
               f"router's choice {routed.model} is served")
        model = routed.model
    return dataclasses.replace(
        routed, model=model, reason=why, cleared=True, rule=rule, knob=knob, router_version=version, target=None,
        extra={**routed.extra, "reference_router": reference.version, "reference_model": routed.model},
    )


@dataclass(frozen=True)
class RulesPolicy:
    """The seed rules of one kind, resolved to ``models`` (see module docstring)."""

    spec: RulesArm
    rules: SeedRules
    models: tuple[str, ...]
    reference: Router | None = None

    @property
    def embedding_router(self) -> Router | None:
        return self.reference

    @property
    def version(self) -> str:
        return self.spec.describe()

    def check(self) -> None:
        """Raise ValueError (naming the rules file) unless every model this rule can choose is one of ``models``."""
        cfg = self.rules.config
        if self.spec.kind == "budget":
            names = {t[k] for t in cfg["budget_rule"] for k in ("simple", "complex")}
        elif self.spec.kind == "task":
            names = set(cfg["task_rule"].values())
        else:
            names = {t["model"] for t in cfg["latency_rule"]}
        for name in sorted(names):
            self.rules.resolve(name, self.models)

    def choose(self, call: RouteQuery) -> tuple[str, float, str]:
        """(model, knob, reason) under this arm's rule for ``call``."""
        cfg, spec = self.rules.config, self.spec
        if spec.kind == "budget":
            budget = call.constraints.max_cost_usd if call.constraints.max_cost_usd is not None else spec.budget_usd
            complexity = self.rules.complexity(call.task)
            tier = next(t for t in cfg["budget_rule"] if t["below"] is None or budget < float(t["below"]))
            seed_model = tier[complexity]
            why = f"seed budget rule: {complexity} task, budget ${budget:g} per request -> {seed_model}"
            knob = float(budget)
        elif spec.kind == "task":
            rule = cfg["task_rule"]
            seed_model = rule.get(call.task, rule["default"]) if call.task else rule["default"]
            why = f"seed task rule: task {call.task or '(no hint)'} -> {seed_model}"
            knob = 0.0
        else:
            latency = call.constraints.max_latency_ms if call.constraints.max_latency_ms is not None else spec.latency_ms
            tier = next(t for t in cfg["latency_rule"] if t["below_ms"] is None or latency < float(t["below_ms"]))
            seed_model = tier["model"]
            why = f"seed latency rule: budget {latency:g} ms -> {seed_model}"
            knob = float(latency)
        model = self.models[self.rules.resolve(seed_model, self.models)]
        if model != seed_model:
            why += f" (stands in as {model})"
        return model, knob, why

    def route(self, call: RouteQuery, route: RouteFn = Router.route_query) -> Decision:
        model, knob, why = self.choose(call)
        return _static(model, self.version, f"static:{self.spec.kind}", knob, why, call, self.reference, route)


@dataclass(frozen=True)
class AlwaysPolicy:
    model: str
    reference: Router | None = None

    @property
    def embedding_router(self) -> Router | None:
        return self.reference

    def route(self, call: RouteQuery, route: RouteFn = Router.route_query) -> Decision:
        return _static(self.model, f"always:{self.model}", "static:always", 0.0, f"always {self.model}", call,
                       self.reference, route)


def load_arm_routers(
    experiment: Experiment, core: Settings, skip: Callable[[str], bool] = lambda spec: False
) -> dict[str, Router]:
    """The router of every router arm (each distinct ``router`` once; not those ``skip`` names),
    by its ``router`` string. Blocking. A router that cannot be loaded raises a RuntimeError naming
    the experiment file, the arm and the router."""
    routers: dict[str, Router] = {}
    for arm in experiment.arms:
        if arm.router is None or arm.router in routers or skip(arm.router):
            continue
        try:
            routers[arm.router] = load_router(arm.router, core)
        except Exception as exc:  # registry, file and embedder errors all say the same here
            raise RuntimeError(f"{experiment.source}: arm {arm.name!r}: cannot load router {arm.router}: {exc}") from exc
    return routers


def load_rules(spec: RulesArm) -> SeedRules:
    """The rules file of a static arm (the bundled seed rules when ``spec.file`` is None)."""
    return SeedRules.load(spec.file)


def build_policy(
    arm: Arm,
    routers: Mapping[str, Router],
    models: Sequence[str],
    reference: Router | None = None,
    rules: SeedRules | None = None,
) -> Policy:
    """The policy of ``arm``. ``routers`` maps each router arm's ``router`` string to the loaded
    router; ``models`` are the models static arms choose among (the reference's, in the service);
    ``rules`` the loaded rules of a static arm (read from its file when not given)."""
    if arm.router is not None:
        if arm.router not in routers:
            raise KeyError(f"arm {arm.name!r}: router {arm.router} is not loaded")
        return RouterPolicy(routers[arm.router])
    if arm.rules is not None:
        policy = RulesPolicy(arm.rules, rules or load_rules(arm.rules), tuple(models), reference)
        policy.check()
        return policy
    assert arm.always is not None
    if arm.always not in models:
        raise ValueError(f"arm {arm.name!r}: 'always: {arm.always}' is not one of the models {list(models)}")
    return AlwaysPolicy(arm.always, reference)
