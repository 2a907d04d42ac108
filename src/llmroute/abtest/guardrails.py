"""Guardrails: stop an arm whose running mean cost per request or error rate breaks the limits.

An arm is checked once it has served ``min_requests`` requests; from then on, as soon as its mean
cost per request exceeds ``max_cost_per_request_usd`` or its error rate exceeds ``max_error_rate``,
it is stopped for good (in this monitor) and its traffic goes to the control arm (see
:func:`llmroute.abtest.assignment.assign`). The control arm is never stopped: it is the fallback.

What counts: the cost of a request is its realised cost when its outcome is known (a proxied chat
call: the cost of every cascade attempt), else the chosen model's expected cost at decision time
(``/route`` only: the service never sees the call). Errors are known only from outcomes: the error
rate is failed outcomes / outcomes.

State is per process: with several service workers each one enforces the guardrails on the traffic
it serves. ``llmroute ab report`` recomputes them from the decision log (:func:`replay`), so the
report is the authority on when an arm broke a limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from llmroute.abtest.experiment import Experiment, Guardrails


@dataclass
class ArmTally:
    """Running totals of one arm."""

    requests: int = 0
    cost_sum: float = 0.0
    outcomes: int = 0
    errors: int = 0

    @property
    def mean_cost(self) -> float:
        return self.cost_sum / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.outcomes if self.outcomes else 0.0


@dataclass(frozen=True)
class Stop:
    """Why and when an arm was stopped (after how many of its requests)."""

    arm: str
    reason: str
    after_requests: int


def breach(tally: ArmTally, limits: Guardrails) -> str | None:
    """The limit ``tally`` breaks, or None (also None below ``min_requests``)."""
    if tally.requests < limits.min_requests:
        return None
    if limits.max_cost_per_request_usd is not None and tally.mean_cost > limits.max_cost_per_request_usd:
        return (f"mean cost per request ${tally.mean_cost:.6f} > max ${limits.max_cost_per_request_usd:g} "
                f"after {tally.requests} requests")
    if limits.max_error_rate is not None and tally.outcomes and tally.error_rate > limits.max_error_rate:
        return (f"error rate {tally.error_rate:.1%} > max {limits.max_error_rate:.1%} "
                f"after {tally.outcomes} calls ({tally.requests} requests)")
    return None


@dataclass
class GuardrailMonitor:
    """Thread-safe running tallies of an experiment's arms and the arms stopped so far."""

    experiment: Experiment
    tallies: dict[str, ArmTally] = field(default_factory=dict)
    stops: dict[str, Stop] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stopped(self) -> frozenset[str]:
        return frozenset(self.stops)

    def _check(self, arm: str) -> None:
        if arm == self.experiment.control.name or arm in self.stops:
            return
        tally = self.tallies[arm]
        reason = breach(tally, self.experiment.guardrails)
        if reason is not None:
            self.stops[arm] = Stop(arm, reason, tally.requests)

    def observe_request(self, arm: str, cost_usd: float | None, ok: bool | None = None) -> None:
        """Count one request of ``arm``: its cost (realised or expected) and, when known, its outcome."""
        with self._lock:
            t = self.tallies.setdefault(arm, ArmTally())
            t.requests += 1
            t.cost_sum += float(cost_usd or 0.0)
            if ok is not None:
                t.outcomes += 1
                t.errors += 0 if ok else 1
            self._check(arm)

    def correct_cost(self, arm: str, expected: float, realised: float, ok: bool) -> None:
        """Replace a request's expected cost (counted at decision time) by its realised one and count
        its outcome (chat: the outcome is known after the cascade)."""
        with self._lock:
            t = self.tallies.setdefault(arm, ArmTally())
            t.cost_sum += float(realised) - float(expected)
            t.outcomes += 1
            t.errors += 0 if ok else 1
            self._check(arm)


def replay(experiment: Experiment, requests: Iterable[tuple[str, float | None, bool | None]]) -> dict[str, Stop]:
    """Run the guardrails over ``(served arm, cost, ok)`` in time order, as one process would have;
    returns the stops (the report's recomputation from the log)."""
    monitor = GuardrailMonitor(experiment)
    for arm, cost, ok in requests:
        monitor.observe_request(arm, cost, ok)
    return dict(monitor.stops)
