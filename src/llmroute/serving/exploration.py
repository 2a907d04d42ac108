"""Exploration: a small, bounded share of decisions goes to another eligible model, with a known propensity.

With probability ``share`` (the tenant's exploration share, see
:meth:`llmroute.serving.settings.ServeSettings.exploration_for`) the router's model is replaced by one
drawn uniformly from an *exploration set* of other eligible candidates, chosen by the mode:

* ``uniform`` (the default): every other eligible model;
* ``runner_up``: the ``top_k`` eligible models the router itself ranks next after its pick, in the
  order of its own rule (:func:`llmroute.router.policy.ranking`: for the threshold rule the models that
  clear the bar from cheapest to dearest, then the others by decreasing probability; for the utility
  rule, decreasing ``p - knob * cost``). A challenger retrained on the same kind of data mostly
  disagrees with the router by choosing one of these, so the evidence concentrates where it is needed.
  Decisions whose rule is not one of the router's (a static A/B arm) rank by decreasing probability.

Eligibility already encodes the request's constraints (allowed / excluded models, capabilities, max
cost, max latency), so an explored model never breaks them. The propensity of the served model is

* the router's pick: ``1 - share`` (1.0 when ``share`` is 0 or the exploration set is empty);
* an explored model: ``share / k``, ``k`` = the size of the exploration set (``k <= top_k`` under
  ``runner_up``, fewer when fewer models are eligible).

Logged with the decision, it makes the log usable for off-policy evaluation (counterfactual outcomes).
Under ``runner_up`` the decision also carries ``extra["exploration"]`` (mode, top_k, share and the
exploration set; the decision log stores it in the record's constraints JSON), so off-policy
evaluation recovers the logging policy's whole distribution, not only the served model's probability.
Under ``uniform`` nothing is added: the set is every other eligible model and the share follows from
the propensity, as before.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any

import numpy as np

from llmroute.router import policy
from llmroute.router.decision import Decision
from llmroute.router.decision_rules import CONFIDENCE_RULE

MODES: tuple[str, ...] = ("uniform", "runner_up")


class Explorer:
    """The random draws of exploration; thread-safe (one lock around each decision's draws).

    With a ``seed`` the draws come from one seeded :class:`random.Random` (deterministic, for tests);
    without, from the OS (:class:`random.SystemRandom`)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()

    def draw(self, share: float, others: list[str]) -> str | None:
        """An explored model from ``others`` with probability ``share``, else None (keep the router's pick)."""
        if share <= 0.0 or not others:
            return None
        with self._lock:
            if self._rng.random() >= share:
                return None
            return self._rng.choice(others)


def runner_ups(decision: Decision, top_k: int) -> list[str]:
    """The ``top_k`` eligible models the decision's rule ranks next after the chosen model."""
    cands = decision.candidates
    probs = np.array([c.probability for c in cands], dtype=float)
    costs = np.array([c.expected_cost_usd for c in cands], dtype=float)
    mask = np.array([c.eligible for c in cands], dtype=bool)
    names = [c.model for c in cands]
    first = names.index(decision.model) if decision.model in names else None
    rule, knob = (decision.rule, decision.knob) if policy.is_rule(decision.rule) else (CONFIDENCE_RULE, float("inf"))
    order = policy.ranking(rule, probs, costs, mask, knob, first)
    return [names[j] for j in order if names[j] != decision.model][:top_k]


def exploration_set(decision: Decision, mode: str = "uniform", top_k: int = 2) -> list[str]:
    """The models an explored draw may serve instead of ``decision.model`` under ``mode``."""
    if mode == "uniform":
        return [c.model for c in decision.candidates if c.eligible and c.model != decision.model]
    if mode == "runner_up":
        if top_k < 1:
            raise ValueError(f"exploration top_k must be at least 1, got {top_k}")
        return runner_ups(decision, top_k)
    raise ValueError(f"unknown exploration mode {mode!r}; expected one of {MODES}")


def explore(
    decision: Decision, share: float, explorer: Explorer, mode: str = "uniform", top_k: int = 2
) -> tuple[Decision, float]:
    """The decision to serve under exploration ``share`` and ``mode``, and the probability it had of being served."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"exploration share must be in [0, 1], got {share}")
    others = exploration_set(decision, mode, top_k)
    if share == 0.0 or not others:
        return decision, 1.0
    logged: dict[str, Any] = {}
    if mode != "uniform":
        logged = {"exploration": {"mode": mode, "top_k": top_k, "share": share, "models": list(others)}}
    pick = explorer.draw(share, others)
    if pick is None:
        return (dataclasses.replace(decision, extra={**decision.extra, **logged}) if logged else decision), 1.0 - share
    propensity = share / len(others)
    drawn_from = (
        f"the {len(others)} other eligible model(s)" if mode == "uniform"
        else f"the router's {len(others)} runner-up model(s) {', '.join(others)}"
    )
    explored = dataclasses.replace(
        decision,
        model=pick,
        reason=(
            f"exploration: served {pick}, drawn uniformly from {drawn_from} "
            f"(exploration share {share:g}, propensity {propensity:.4g}) instead of the router's choice "
            f"{decision.model} ({decision.reason})"
        ),
        extra={**decision.extra, **logged, "explored": True, "router_model": decision.model, "exploration_share": share},
    )
    return explored, propensity
