"""Turning a user's quality target into a rule's knob, from validation (out-of-fold) data.

For each rule, the knob grid is swept over validation predictions; the realised (mean quality, mean
cost) of every knob value is kept. A target is then mapped to the cheapest knob whose validation
quality reaches it. The curve is made monotone first (running maximum along the grid, which is ordered
from cheap to expensive behaviour), so a higher target never maps to a cheaper knob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmroute.router import policy
from llmroute.router.decision import QualityTarget


@dataclass(frozen=True)
class KnobTable:
    rule: str
    knobs: tuple[float, ...]
    quality: tuple[float, ...]
    cost: tuple[float, ...]
    best_single_model: str
    best_single_quality: float
    best_single_cost: float

    def absolute(self, target: QualityTarget) -> float:
        if target.kind == "relative":
            return target.value * self.best_single_quality
        return target.value

    def knob_for(self, target: QualityTarget) -> tuple[float, bool]:
        """(knob, reachable): the cheapest knob whose validation quality meets the target.

        If no knob reaches it, the knob with the best validation quality and ``reachable=False``.
        """
        goal = self.absolute(target)
        q = np.maximum.accumulate(np.asarray(self.quality))
        hits = np.nonzero(q >= goal - 1e-12)[0]
        if len(hits) == 0:
            return float(self.knobs[int(np.argmax(q))]), False
        return float(self.knobs[int(hits[0])]), True

    def to_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> KnobTable:
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**fields)


def realised(quality: np.ndarray, cost: np.ndarray, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean realised quality and cost per knob column of ``choices`` (n, K); unknown cells skipped."""
    rows = np.arange(len(quality))[:, None]
    q = quality[rows, choices]
    c = cost[rows, choices]
    return np.nanmean(q, axis=0), np.nanmean(c, axis=0)


def build_knob_table(
    rule: str,
    models: tuple[str, ...],
    probs: np.ndarray,
    expected_cost: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
) -> KnobTable:
    """Sweep ``rule`` over validation predictions and record the realised curve."""
    choices = policy.sweep(rule, probs, expected_cost)
    q, c = realised(quality, cost, choices)
    single_q = np.nanmean(quality, axis=0)
    best = int(np.nanargmax(single_q))
    return KnobTable(
        rule=rule,
        knobs=tuple(float(k) for k in policy.knob_grid(rule)),
        quality=tuple(float(x) for x in q),
        cost=tuple(float(x) for x in c),
        best_single_model=models[best],
        best_single_quality=float(single_q[best]),
        best_single_cost=float(np.nanmean(cost[:, best])),
    )
