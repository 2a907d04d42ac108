"""Exploration: a small, bounded share of decisions goes to another eligible model, with a known propensity.

With probability ``share`` (the tenant's exploration share, see
:meth:`llmroute.serving.settings.ServeSettings.exploration_share_for`) the router's model is replaced by
one drawn uniformly from the *other* eligible candidates. Eligibility already encodes the request's
constraints (allowed / excluded models, capabilities, max cost, max latency), so an explored model
never breaks them. The propensity of the served model is

* the router's pick: ``1 - share`` (1.0 when ``share`` is 0 or no other model is eligible);
* an explored model: ``share / k``, ``k`` = the number of other eligible models.

Logged with the decision, it makes the log usable for off-policy evaluation (counterfactual outcomes).
"""

from __future__ import annotations

import dataclasses
import random
import threading

from llmroute.router.decision import Decision


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


def explore(decision: Decision, share: float, explorer: Explorer) -> tuple[Decision, float]:
    """The decision to serve under exploration ``share`` and the probability it had of being served."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"exploration share must be in [0, 1], got {share}")
    others = [c.model for c in decision.candidates if c.eligible and c.model != decision.model]
    if share == 0.0 or not others:
        return decision, 1.0
    pick = explorer.draw(share, others)
    if pick is None:
        return decision, 1.0 - share
    propensity = share / len(others)
    explored = dataclasses.replace(
        decision,
        model=pick,
        reason=(
            f"exploration: served {pick}, drawn uniformly from the {len(others)} other eligible model(s) "
            f"(exploration share {share:g}, propensity {propensity:.4g}) instead of the router's choice "
            f"{decision.model} ({decision.reason})"
        ),
        extra={**decision.extra, "explored": True, "router_model": decision.model, "exploration_share": share},
    )
    return explored, propensity
