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
* the **level** (the budget's trade-off: the table cost per request it allows) follows the
  allowance over the gain as an exponential average over ``smoothing_requests`` requests (the lag
  never more than a quarter of the requests still expected), so the daily pattern and bursts of the
  traffic (which swing the extrapolated request count) move it less, while a sustained error moves
  it all the same. The default, 1, does not average: on RouterBench's train split averaging over 100
  or 300 requests lost 0.0002-0.0046 mean quality per stream (the allowance is already an average
  over the window). The level is held between the floor's and the request's own target's costs (no
  wind-up). The
  caller keeps the level between requests (:attr:`PaceState.level` in, :attr:`PaceStep.level` out):
  one per budget;
* the knobs pacing uses are those on the **upper concave hull** of the table's (cost, quality)
  between the floor and the request's own target: a mix of two neighbours on it buys the most
  validation quality for its expected cost. Each request gets one of the two hull knobs whose costs
  bracket the level, at random, in the share that makes the expected cost the level (the dither
  makes spend track the level exactly), handed to the router as an absolute quality target (the
  knob's validation quality), so the router itself is never changed.

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

DEFAULT_SMOOTHING = 1.0  # requests (1: no averaging); chosen on RouterBench's train split (see the README)


@dataclass(frozen=True)
class PaceState:
    """What the controller sees of a window: amount, spend and requests so far, elapsed share."""

    amount_usd: float
    spent_usd: float
    calls: int
    elapsed: float
    gain: float = 1.0
    rolling: bool = False
    level: float | None = None  # the budget's trade-off so far (table cost per request it allows); None: not paced yet


@dataclass(frozen=True)
class PaceStep:
    """The controller's output: the knob index it allows and the absolute target it maps to."""

    index: int
    target: QualityTarget
    allowance_usd: float | None  # None: too early to pace (request's own target)
    table_cost_usd: float
    level: float | None = None  # the budget's trade-off after this request (USD per request, table scale): keep it


class PacingController:
    """Pacing over one router's knob table (see module docstring). Cheap (O(grid) numpy, hulls cached);
    thread-safe (its only mutable state is the dither's random generator and the hull cache)."""

    def __init__(self, table: KnobTable, floor: QualityTarget | None = None, *, min_elapsed: float = 0.01,
                 min_calls: int = 20, smoothing_requests: float = DEFAULT_SMOOTHING, seed: int | None = None,
                 convex: bool = True) -> None:
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
        self._hulls: dict[tuple[int, int], tuple[int, ...]] = {}
        self.convex = convex

    def index_for(self, target: QualityTarget) -> int:
        """The cheapest knob index whose validation quality reaches ``target`` (the last one if none does)."""
        goal = self.table.absolute(target)
        hits = np.nonzero(self.quality >= goal - 1e-12)[0]
        return int(hits[0]) if len(hits) else len(self.quality) - 1

    def hull(self, lo: int, hi: int) -> tuple[int, ...]:
        """The knobs in ``[lo, hi]`` on the upper concave hull of validation (cost, quality), cheapest first:
        mixing two neighbours on it buys the most quality for an expected cost (any other knob, or mix, buys
        less), so pacing only ever mixes these. Starts at ``lo``; ends at ``hi`` unless ``hi`` buys nothing."""
        key = (lo, hi)
        if key not in self._hulls:
            chain: list[int] = []
            for i in range(lo, hi + 1):
                if chain and self.quality[i] <= self.quality[chain[-1]] + 1e-15:
                    continue  # more cost, no more quality
                if chain and self.cost[i] <= self.cost[chain[-1]]:
                    chain.pop()  # as cheap and better: replaces it
                while self.convex and len(chain) >= 2:
                    a, b = chain[-2], chain[-1]
                    # b lies on or below the line from a to i: not on the upper hull
                    cross = ((self.cost[b] - self.cost[a]) * (self.quality[i] - self.quality[a])
                             - (self.quality[b] - self.quality[a]) * (self.cost[i] - self.cost[a]))
                    if cross < 0:
                        break
                    chain.pop()
                chain.append(i)
            self._hulls[key] = tuple(chain) or (lo,)
        return self._hulls[key]

    def step(self, state: PaceState, base: QualityTarget) -> PaceStep:
        """The knob for the next request whose own target is ``base``, and the budget's new level."""
        top = max(self.index_for(base), self.floor_index)
        allowance = self.allowance(state)
        if allowance is None:
            return PaceStep(top, QualityTarget(float(min(1.0, self.quality[top])), "absolute"), None,
                            float(self.cost[top]), state.level)
        hull = self.hull(self.floor_index, top)
        wanted = allowance / max(state.gain, 1e-9)
        if state.level is None or allowance <= 0:  # the first paced request, or nothing left: no lag
            level = wanted
        else:  # the lag never exceeds a quarter of the requests still expected, so the window still ends on budget
            lag = min(self.smoothing_requests, max(1.0, self.remaining(state) / 4.0))
            level = state.level + (wanted - state.level) / lag
        level = float(min(max(level, self.cost[hull[0]]), self.cost[hull[-1]]))  # no wind-up past either end
        index = self.mix(hull, level)
        return PaceStep(index, QualityTarget(float(min(1.0, self.quality[index])), "absolute"), allowance,
                        float(self.cost[index]), level)

    def mix(self, hull: tuple[int, ...], level: float) -> int:
        """The hull knob for one request: of the two neighbours whose costs bracket ``level``, the dearer one with
        the probability that makes the expected cost ``level``."""
        costs = self.cost[list(hull)]
        j = int(np.searchsorted(costs, level, side="right")) - 1
        if j < 0:
            return hull[0]
        if j >= len(hull) - 1:
            return hull[-1]
        share = (level - costs[j]) / (costs[j + 1] - costs[j])
        return hull[j + 1] if self._rng.random() < share else hull[j]

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
    """Realised spend over the knob table's cost at the knobs used, over the last ``horizon`` requests or so
    (exponentially weighted: the ratio differs from knob to knob, so it must follow the knobs in use), shrunk
    towards 1 by ``prior_calls`` pseudo-requests at gain 1 so the first few realised costs do not swing it.
    Thread-safe."""

    def __init__(self, prior_calls: float = 50.0, horizon: float = 200.0) -> None:
        self._lock = threading.Lock()
        self.prior_calls = prior_calls
        self.decay = 1.0 - 1.0 / max(horizon, 1.0)
        self.realised = 0.0
        self.predicted = 0.0
        self.weight = 0.0  # the decayed count of requests in the sums
        self.calls = 0

    def add(self, predicted_usd: float, realised_usd: float) -> None:
        with self._lock:
            self.predicted = self.predicted * self.decay + max(0.0, predicted_usd)
            self.realised = self.realised * self.decay + max(0.0, realised_usd)
            self.weight = self.weight * self.decay + 1.0
            self.calls += 1

    @property
    def gain(self) -> float:
        with self._lock:
            if self.calls == 0 or self.predicted <= 0:
                return 1.0
            mean_pred = self.predicted / self.weight
            prior = self.prior_calls * mean_pred * (self.decay ** self.calls)  # the prior fades like an old request
            return (self.realised + prior) / (self.predicted + prior)
