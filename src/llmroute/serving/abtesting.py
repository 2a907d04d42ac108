"""A live A/B experiment in the service (``ServeSettings.experiment``, ``LLMROUTE_SERVE_EXPERIMENT``).

The lifespan loads the experiment YAML and the routers of its router arms once, off the event loop
(:func:`load_live_experiment`). An arm whose ``router`` is the served model itself
(``ServeSettings.model``, same URI or same folder) uses the served router, so reloads reach it.
Per request (:mod:`llmroute.serving.decide`) :meth:`LiveExperiment.assign` picks the arm by the
sticky hash of the experiment's unit (``user``, ``tenant`` or ``session`` of the request; see
:mod:`llmroute.abtest.assignment` for requests without it and outside start/stop) and
:meth:`LiveExperiment.policy` gives that arm's policy (built once per served router). Static arms use the served router as their
reference, so their decisions carry its candidates (for the log and the cascade).

Guardrail state (:class:`llmroute.abtest.guardrails.GuardrailMonitor`) lives in this process only:
with several workers each one enforces the limits on the traffic it serves, and
``llmroute ab report`` recomputes them from the decision log.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmroute.abtest.arms import Policy, build_policy, load_arm_routers, load_rules
from llmroute.abtest.assignment import Assignment, assign, unit_value
from llmroute.abtest.experiment import Experiment, load_experiment
from llmroute.abtest.guardrails import GuardrailMonitor
from llmroute.artifacts.loading import REGISTRY_PREFIX
from llmroute.config import Settings
from llmroute.data.catalog import ModelSpec
from llmroute.router.baselines import SeedRules
from llmroute.router.router import Router
from llmroute.serving.errors import ServiceError


def _same_source(a: str, b: str) -> bool:
    if a.startswith(REGISTRY_PREFIX) or b.startswith(REGISTRY_PREFIX):
        return a.strip().rstrip("/") == b.strip().rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


@dataclass
class LiveExperiment:
    """An experiment with its arms' routers and rules loaded, and its guardrail monitor."""

    experiment: Experiment
    served_model: str
    routers: dict[str, Router] = field(default_factory=dict)  # arm router spec -> router (not the served one)
    rules: dict[str, SeedRules] = field(default_factory=dict)  # arm name -> its rules
    monitor: GuardrailMonitor = field(init=False)
    # every arm's policy (or why it cannot be built) for the router served last; rebuilt after a reload
    _policies: tuple[Router, dict[str, Policy | Exception]] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.monitor = GuardrailMonitor(self.experiment)

    def assign(self, user: str | None, tenant: str | None, session: str | None) -> Assignment | None:
        value = unit_value(self.experiment.unit, user=user, tenant=tenant, session=session)
        return assign(self.experiment, value, stopped=self.monitor.stopped)

    def policy(self, arm_name: str, served: Router) -> Policy:
        """The policy of ``arm_name`` for a request served by ``served`` (the router it keeps). The
        policies are built once per served router, not per request."""
        with self._lock:
            cached = self._policies
            if cached is None or cached[0] is not served:
                cached = self._policies = (served, self._build(served))
        built = cached[1][arm_name]
        if isinstance(built, Exception):  # the arm does not fit the served router's models
            raise ServiceError(
                500, "experiment_misconfigured",
                f"{self.experiment.source}: arm {arm_name!r} cannot route with router {served.version}: {built}",
            ) from built
        return built

    def _build(self, served: Router) -> dict[str, Policy | Exception]:
        routers = dict(self.routers)
        for arm in self.experiment.arms:
            if arm.router is not None and _same_source(arm.router, self.served_model):
                routers[arm.router] = served
        out: dict[str, Policy | Exception] = {}
        for arm in self.experiment.arms:
            try:
                out[arm.name] = build_policy(arm, routers, served.models, reference=served, rules=self.rules.get(arm.name))
            except (KeyError, ValueError) as exc:
                out[arm.name] = exc
        return out


def load_live_experiment(
    path: str, served_model: str, core: Settings, catalog: Mapping[str, ModelSpec] | None = None
) -> LiveExperiment:
    """Load the experiment and every arm's router and rules (blocking: call it off the event loop);
    ``catalog``: the deployment's catalog entries, laid over each arm router's snapshot as over the
    served router's (``ServeSettings.catalog``), so every arm sees the same local models and endpoints."""
    experiment = load_experiment(path)
    routers = load_arm_routers(experiment, core, skip=lambda spec: _same_source(spec, served_model))
    if catalog is not None:
        routers = {spec: r.with_catalog(catalog) for spec, r in routers.items()}
    live = LiveExperiment(experiment, served_model, routers)
    for arm in experiment.arms:
        if arm.rules is not None:
            live.rules[arm.name] = load_rules(arm.rules)
    return live
