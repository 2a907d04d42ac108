"""Budget pacing: a feedback controller that moves the router's quality target so a window ends on budget.

The plant is the router: along its knob table (validation data, ordered from cheap to expensive
behaviour) each knob has a realised mean cost per request and a mean quality. The controller
tracks planned against actual spend through the window:

* the **allowance** per request is what is left of the budget spread over the requests still
  expected this window, ``(amount - spent) / (calls * (1 - t) / t)`` at elapsed share ``t`` with
  ``calls`` requests charged so far (the window's own traffic rate extrapolated). Spend running
  ahead of plan shrinks it at once; spend running behind grows it: this is the feedback;
* a **gain** corrects the knob table's costs to this traffic: realised spend over the table's cost
  at the knobs used (shrunk towards 1 by a prior of ``prior_calls`` requests);
* the **knob** is the most expensive one whose corrected cost fits the allowance, never above the
  request's own target and never below the budget's ``floor``; it is handed to the router as an
  absolute quality target (the knob's validation quality), so the router itself is never changed.

Before ``min_elapsed`` of the window and ``min_calls`` requests there is no rate to extrapolate and
the request's own target is used. A rolling window is always full: its allowance is
``(2 * amount - spent) / calls`` (the amount per request of the last span's traffic at spend = amount,
less above it, more below it). Pacing never blocks: at or over the amount it routes at the floor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from llmroute.router.decision import QualityTarget
from llmroute.router.knobs import KnobTable


@dataclass(frozen=True)
class PaceState:
    """What the controller sees of a window: amount, spend and requests so far, elapsed share."""

    amount_usd: float
    spent_usd: float
    calls: int
    elapsed: float
    gain: float = 1.0
    rolling: bool = False


@dataclass(frozen=True)
class PaceStep:
    """The controller's output: the knob index it allows and the absolute target it maps to."""

    index: int
    target: QualityTarget
    allowance_usd: float | None  # None: too early to pace (request's own target)
    table_cost_usd: float


class PacingController:
    """Pacing over one router's knob table (see module docstring). Pure and cheap (O(grid) numpy)."""

    def __init__(self, table: KnobTable, floor: QualityTarget | None = None, *, min_elapsed: float = 0.01,
                 min_calls: int = 20) -> None:
        self.table = table
        self.quality = np.maximum.accumulate(np.asarray(table.quality, dtype=float))
        # the cost envelope: the dearest behaviour up to each knob (the grid's costs are not monotone)
        self.cost = np.maximum.accumulate(np.nan_to_num(np.asarray(table.cost, dtype=float), nan=0.0))
        self.floor_index = self.index_for(floor) if floor is not None else 0
        self.min_elapsed = min_elapsed
        self.min_calls = min_calls

    def index_for(self, target: QualityTarget) -> int:
        """The cheapest knob index whose validation quality reaches ``target`` (the last one if none does)."""
        goal = self.table.absolute(target)
        hits = np.nonzero(self.quality >= goal - 1e-12)[0]
        return int(hits[0]) if len(hits) else len(self.quality) - 1

    def step(self, state: PaceState, base: QualityTarget) -> PaceStep:
        """The knob for the next request whose own target is ``base``."""
        top = max(self.index_for(base), self.floor_index)
        allowance = self.allowance(state)
        if allowance is None:
            index = top
        else:
            fits = np.nonzero(self.cost[: top + 1] * max(state.gain, 1e-9) <= allowance)[0]
            index = max(int(fits[-1]) if len(fits) else 0, self.floor_index)
        return PaceStep(index, QualityTarget(float(min(1.0, self.quality[index])), "absolute"), allowance,
                        float(self.cost[index]))

    def allowance(self, state: PaceState) -> float | None:
        """USD per request left for the rest of the window, or None before there is a rate to go by."""
        if state.elapsed < self.min_elapsed or state.calls < self.min_calls:
            return None
        if state.rolling:  # steady state: the last span's traffic repeats; spend above the amount lowers it
            return max(0.0, 2.0 * state.amount_usd - state.spent_usd) / max(state.calls, 1)
        left = max(0.0, state.amount_usd - state.spent_usd)
        if state.elapsed >= 1.0:
            return left
        expected = state.calls * (1.0 - state.elapsed) / state.elapsed
        return left / max(expected, 1.0)


class GainTracker:
    """Realised spend over the knob table's cost at the knobs used, shrunk towards 1 (thread-safe).

    ``prior_calls`` pseudo-requests at gain 1 keep the first few realised costs from swinging it."""

    def __init__(self, prior_calls: float = 50.0) -> None:
        self._lock = threading.Lock()
        self.prior_calls = prior_calls
        self.realised = 0.0
        self.predicted = 0.0
        self.calls = 0

    def add(self, predicted_usd: float, realised_usd: float) -> None:
        with self._lock:
            self.predicted += max(0.0, predicted_usd)
            self.realised += max(0.0, realised_usd)
            self.calls += 1

    @property
    def gain(self) -> float:
        with self._lock:
            if self.calls == 0 or self.predicted <= 0:
                return 1.0
            mean_pred = self.predicted / self.calls
            return (self.realised + self.prior_calls * mean_pred) / (self.predicted + self.prior_calls * mean_pred)
