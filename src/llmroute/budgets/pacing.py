"""Budget pacing: a feedback controller that holds one cost trade-off for a window and moves it smoothly.

The plant is the router: along its knob table (validation data, ordered from cheap to expensive
behaviour) each knob has a realised mean cost per request and a mean quality. For a knapsack-like
budget (a fixed amount over a stream of requests) the policy with the best quality for its spend
keeps **one** trade-off for the whole window (one Lagrange multiplier on cost: one knob), and the
best of those is the one whose spend is the budget. The controller estimates that knob online and
moves it slowly, because every swing of the knob with the traffic costs quality (quality is concave
in spend):

* the **allowance** per request is what is left of the budget spread over the requests still
  expected this window, ``(amount - spent) / (calls * (1 - t) / t)`` at elapsed share ``t`` with
  ``calls`` requests charged so far (the window's own traffic rate extrapolated). Spend running
  ahead of plan shrinks it; spend running behind grows it: this is the feedback (integral action on
  the spend error, since ``spent`` is the integral of every past pick);
* a **gain** corrects the knob table's costs to this traffic: realised spend over the table's cost
  at the knobs used (shrunk towards 1 by a prior of ``prior_calls`` requests);
* the allowance, over the gain, is read on the table's cost envelope as a **continuous knob
  position** (interpolated between knobs), clipped to ``[floor, request's own target]``;
* the **level** (the budget's trade-off, a continuous knob position) follows that position as an
  exponential average over ``smoothing_requests`` requests, so the daily pattern and bursts of the
  traffic (which swing the extrapolated request count) barely move it, while a sustained error
  does. The caller keeps the level between requests (:attr:`PaceState.level` in, :attr:`PaceStep.level`
  out): one per budget;
* each request gets the knob below or above the level at random, in the share that makes the
  expected knob cost the level's (knobs are discrete; the dither makes spend track the level
  exactly), handed to the router as an absolute quality target (the knob's validation quality),
  so the router itself is never changed.

Before ``min_elapsed`` of the window and ``min_calls`` requests there is no rate to extrapolate and
the request's own target is used. A rolling window is always full: its allowance is
``(2 * amount - spent) / calls`` (the amount per request of the last span's traffic at spend = amount,
less above it, more below it). Pacing never blocks: at or over the amount the level falls to the
floor (as fast as the smoothing lets it).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import numpy as np

from llmroute.router.decision import QualityTarget
from llmroute.router.knobs import KnobTable

DEFAULT_SMOOTHING = 300.0  # requests; see PacingController (chosen on RouterBench's train split, see the README)


@dataclass(frozen=True)
class PaceState:
    """What the controller sees of a window: amount, spend and requests so far, elapsed share."""

    amount_usd: float
    spent_usd: float
    calls: int
    elapsed: float
    gain: float = 1.0
    rolling: bool = False
    level: float | None = None  # the budget's trade-off so far (continuous knob position); None: not paced yet


@dataclass(frozen=True)
class PaceStep:
    """The controller's output: the knob index it allows and the absolute target it maps to."""

    index: int
    target: QualityTarget
    allowance_usd: float | None  # None: too early to pace (request's own target)
    table_cost_usd: float
    level: float | None = None  # the budget's trade-off after this request: keep it for the next one


class PacingController:
    """Pacing over one router's knob table (see module docstring). Cheap (O(grid) numpy); thread-safe
    (its only state is the dither's random generator)."""

    def __init__(self, table: KnobTable, floor: QualityTarget | None = None, *, min_elapsed: float = 0.01,
                 min_calls: int = 20, smoothing_requests: float = DEFAULT_SMOOTHING, seed: int | None = None) -> None:
        if not smoothing_requests >= 1:
            raise ValueError(f"smoothing_requests must be >= 1, got {smoothing_requests}")
        self.table = table
        self.quality = np.maximum.accumulate(np.asarray(table.quality, dtype=float))
        # the cost envelope: the dearest behaviour up to each knob (the grid's costs are not monotone)
        self.cost = np.maximum.accumulate(np.nan_to_num(np.asarray(table.cost, dtype=float), nan=0.0))
        self.floor_index = self.index_for(floor) if floor is not None else 0
        self.min_elapsed = min_elapsed
        self.min_calls = min_calls
        self.smoothing_requests = float(smoothing_requests)
        self._rng = random.Random(seed)

    def index_for(self, target: QualityTarget) -> int:
        """The cheapest knob index whose validation quality reaches ``target`` (the last one if none does)."""
        goal = self.table.absolute(target)
        hits = np.nonzero(self.quality >= goal - 1e-12)[0]
        return int(hits[0]) if len(hits) else len(self.quality) - 1

    def position_for(self, cost_usd: float) -> float:
        """The continuous knob position whose table cost (on the envelope, linear between knobs) is ``cost_usd``:
        the highest knob costing at most that, plus the fraction of the step to the next knob it pays for."""
        fits = np.nonzero(self.cost <= cost_usd)[0]
        if not len(fits):
            return 0.0
        i = int(fits[-1])
        if i + 1 >= len(self.cost) or self.cost[i + 1] <= self.cost[i]:
            return float(i)
        return i + float((cost_usd - self.cost[i]) / (self.cost[i + 1] - self.cost[i]))

    def cost_at(self, position: float) -> float:
        """The table cost of a continuous knob position (linear between knobs)."""
        i = int(np.floor(position))
        if i + 1 >= len(self.cost):
            return float(self.cost[-1])
        return float(self.cost[i] + (position - i) * (self.cost[i + 1] - self.cost[i]))

    def step(self, state: PaceState, base: QualityTarget) -> PaceStep:
        """The knob for the next request whose own target is ``base``, and the budget's new level."""
        top = max(self.index_for(base), self.floor_index)
        allowance = self.allowance(state)
        if allowance is None:
            return PaceStep(top, QualityTarget(float(min(1.0, self.quality[top])), "absolute"), None,
                            float(self.cost[top]), state.level)
        wanted = self.position_for(allowance / max(state.gain, 1e-9))
        if state.level is None or allowance <= 0:  # the first paced request, or nothing left: no lag
            level = wanted
        else:  # the lag never exceeds a quarter of the requests still expected, so the window still ends on budget
            lag = min(self.smoothing_requests, max(1.0, self.remaining(state) / 4.0))
            level = state.level + (wanted - state.level) / lag
        level = float(min(max(level, self.floor_index), top))
        index = int(np.floor(level))
        if index < top and self._rng.random() < level - index:
            index += 1
        return PaceStep(index, QualityTarget(float(min(1.0, self.quality[index])), "absolute"), allowance,
                        float(self.cost[index]), level)

    def allowance(self, state: PaceState) -> float | None:
        """USD per request left for the rest of the window, or None before there is a rate to go by."""
        if state.elapsed < self.min_elapsed or state.calls < self.min_calls:
            return None
        if state.rolling:  # steady state: the last span's traffic repeats; spend above the amount lowers it
            return max(0.0, 2.0 * state.amount_usd - state.spent_usd) / max(state.calls, 1)
        return max(0.0, state.amount_usd - state.spent_usd) / max(self.remaining(state), 1.0)

    @staticmethod
    def remaining(state: PaceState) -> float:
        """Requests still expected this window: the rate so far extrapolated (a rolling window: its last span's)."""
        if state.rolling:
            return float(state.calls)
        if state.elapsed >= 1.0:
            return 1.0
        return state.calls * (1.0 - state.elapsed) / max(state.elapsed, 1e-12)


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
