"""The cascade's decisions, free of I/O: which model next, how confidence combines, accept or escalate,
which answer is delivered, and the operating points a quality target maps to.

One implementation for both sides: the service's cascade (:mod:`llmroute.serving.cascade`, async,
over HTTP) and the offline replay of logged answers (:mod:`llmroute.experiments.cascade_eval`) drive
the same :class:`CascadeWalk`; they differ only in how an answer is obtained.

Order. The first attempt goes to the routed model. The next model is the cheapest untried eligible
candidate that is more expensive (by the router's expected cost) **and** has a higher router
probability than the model just tried (:func:`next_model`). When a call *failed* and no such model
exists, the untried eligible model with the highest probability is tried instead, so a request is not
lost while any eligible model is left. With ``jump_after = k``, from the ``k``-th attempt on the
cascade escalates straight to the untried eligible model with the highest router probability instead
(``k = 1``: cheap first, then the most promising model; ``k = 2``: a cheap second opinion first, whose
agreement the scorer sees, then the most promising model). A fixed chain (``CascadeRule.chain``, the
FrugalGPT-style baseline) replaces the order by a list. At most ``max_attempts`` models are called.

Confidence of an answer (:func:`combine_confidence`): the weighted mean of the signals at hand,

    (w_router * p_router + w_scorer * p_scorer + w_logprob * p_logprob) / (w_router + w_scorer + w_logprob)

over the *available* ones only (``p_router``: the router's pre-call probability; ``p_scorer``: the
answer scorer's; ``p_logprob``: exp(mean token logprob) when the provider returns logprobs).

Accept or escalate. Attempt ``k`` (0-based) is accepted when its confidence is at least
``thresholds[k]`` (the last threshold repeats for later attempts); otherwise the cascade escalates.

Delivered answer. The successful answer with the highest confidence (the latest on ties); none if
every attempt failed.

Operating points (:class:`OperatingPoints`): the (router knob, scorer weight, per-attempt thresholds)
combinations on the validation cost-quality frontier, fitted out-of-fold on the training logs
(:mod:`llmroute.training.cascade_fit`). A quality target maps to the cheapest point whose validation
quality reaches it; the frontier's quality rises with its cost, so a higher target never maps to a
cheaper point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmroute.router.decision import Candidate, QualityTarget

OPERATING_POINTS_FILE = "cascade_operating_points.json"
OPERATING_POINTS_FORMAT = 1


def next_model(candidates: Mapping[str, Candidate], current: str, tried: set[str], failed: bool) -> str | None:
    """The model to try after ``current`` (see module docstring), or None."""
    cur = candidates[current]
    open_ = [c for m, c in candidates.items() if c.eligible and m not in tried]
    better = [
        c for c in open_ if c.expected_cost_usd > cur.expected_cost_usd and c.probability > cur.probability
    ]
    if better:
        return min(better, key=lambda c: (c.expected_cost_usd, -c.probability)).model
    if failed and open_:
        return max(open_, key=lambda c: (c.probability, -c.expected_cost_usd)).model
    return None


def combine_confidence(
    router_probability: float,
    scorer_probability: float | None = None,
    logprob_confidence: float | None = None,
    scorer_weight: float = 2.0,
    logprob_weight: float = 1.0,
    router_weight: float = 1.0,
) -> float:
    """Weighted mean of the available signals (see module docstring); the router probability alone
    when every weight of an available signal is 0."""
    num, den = router_weight * router_probability, router_weight
    if scorer_probability is not None:
        num, den = num + scorer_weight * scorer_probability, den + scorer_weight
    if logprob_confidence is not None:
        num, den = num + logprob_weight * logprob_confidence, den + logprob_weight
    return num / den if den > 0 else router_probability


@dataclass(frozen=True)
class CascadeRule:
    """How one cascade runs: per-attempt acceptance thresholds, the most attempts, the signal weights,
    and optionally a fixed chain of models (instead of the router's order)."""

    thresholds: tuple[float, ...] = (0.5,)
    max_attempts: int = 3
    scorer_weight: float = 2.0
    logprob_weight: float = 1.0
    router_weight: float = 1.0
    chain: tuple[str, ...] | None = None
    jump_after: int | None = None

    def __post_init__(self) -> None:
        if not self.thresholds:
            raise ValueError("a cascade rule needs at least one threshold")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def threshold(self, attempt: int) -> float:
        """The acceptance threshold of the ``attempt``-th attempt (0-based; the last one repeats)."""
        return self.thresholds[min(attempt, len(self.thresholds) - 1)]

    def confidence(
        self, router_probability: float, scorer_probability: float | None = None, logprob_confidence: float | None = None
    ) -> float:
        return combine_confidence(
            router_probability, scorer_probability, logprob_confidence,
            self.scorer_weight, self.logprob_weight, self.router_weight,
        )


@dataclass(frozen=True)
class Step:
    """One attempt as the walk saw it."""

    model: str
    ok: bool
    confidence: float | None
    escalated_because: str | None  # None when the cascade stopped after this attempt


class CascadeWalk:
    """The state of one cascade (see module docstring): ask :meth:`next` for the model to call, then
    report :meth:`answered` or :meth:`failed`; :attr:`delivered` is the index of the delivered attempt.

    Guarantee: given the same candidates, rule and the same sequence of answers and confidences, the
    walk makes the same calls and delivers the same attempt, live or offline."""

    def __init__(self, rule: CascadeRule, candidates: Mapping[str, Candidate], first: str) -> None:
        self.rule = rule
        self.candidates = candidates
        self.steps: list[Step] = []
        self.tried: set[str] = set()
        self._next: str | None = rule.chain[0] if rule.chain else first
        self._best: tuple[float, int] | None = None

    def next(self) -> str | None:
        """The model to call now, or None when the cascade is over."""
        if len(self.steps) >= self.rule.max_attempts:
            return None
        return self._next

    def _following(self, model: str, failed: bool, tried: set[str] | None = None, done: int | None = None) -> str | None:
        """The model after ``model`` once ``done`` attempts (default: those made) have tried ``tried``."""
        tried = self.tried if tried is None else tried
        done = len(self.steps) if done is None else done
        if self.rule.chain is not None:
            return next((m for m in self.rule.chain if m not in tried), None)
        if self.rule.jump_after is not None and done >= self.rule.jump_after:
            open_ = [c for m, c in self.candidates.items() if c.eligible and m not in tried]
            return max(open_, key=lambda c: (c.probability, -c.expected_cost_usd)).model if open_ else None
        return next_model(self.candidates, model, tried, failed)

    def is_last(self, model: str) -> bool:
        """Whether ``model`` (about to be called) cannot be escalated from on low confidence: it is the
        ``max_attempts``-th attempt or no model is left to escalate to."""
        if len(self.steps) + 1 >= self.rule.max_attempts:
            return True
        return self._following(model, False, self.tried | {model}, len(self.steps) + 1) is None

    def answered(self, model: str, confidence: float) -> str | None:
        """Record a successful answer; returns why the cascade escalates (None: accepted)."""
        self.tried.add(model)
        k = len(self.steps)
        if self._best is None or confidence >= self._best[0]:
            self._best = (confidence, k)
        t = self.rule.threshold(k)
        why = None if confidence >= t else f"confidence {confidence:.3f} < {t:.3f}"
        self.steps.append(Step(model, True, confidence, why))
        self._next = None if why is None else self._following(model, failed=False)
        return why

    def failed(self, model: str, kind: str | None) -> str:
        """Record a failed call; returns the escalation reason."""
        self.tried.add(model)
        why = kind or "error"
        self.steps.append(Step(model, False, None, why))
        self._next = self._following(model, failed=True)
        return why

    @property
    def delivered(self) -> int | None:
        """Index into :attr:`steps` of the delivered answer, or None when every attempt failed."""
        return None if self._best is None else self._best[1]

    def escalation_reasons(self) -> list[str | None]:
        """Per attempt, why the next one was tried (None for the last attempt)."""
        n = len(self.steps)
        return [s.escalated_because if i < n - 1 else None for i, s in enumerate(self.steps)]


# ---- operating points -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoint:
    """One cascade configuration and its validation (out-of-fold) mean quality and cost."""

    rule: str  # the router's decision rule (a name in llmroute.router.decision_rules); "" for a fixed chain
    knob: float  # the router's knob (ignored for a fixed chain)
    scorer_weight: float
    router_weight: float
    thresholds: tuple[float, ...]
    max_attempts: int
    validation_quality: float
    validation_cost: float
    chain: tuple[str, ...] | None = None
    jump_after: int | None = None

    def cascade_rule(self) -> CascadeRule:
        return CascadeRule(
            tuple(self.thresholds), self.max_attempts, self.scorer_weight, 1.0, self.router_weight, self.chain,
            self.jump_after,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        d["chain"] = list(self.chain) if self.chain is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OperatingPoint:
        return cls(
            **{**d, "thresholds": tuple(d["thresholds"]), "chain": tuple(d["chain"]) if d.get("chain") else None}
        )


@dataclass(frozen=True)
class OperatingPoints:
    """The validation frontiers of the router cascade (``cascade``) and of the fixed-chain baseline
    (``fixed_chain``), each sorted by validation cost with rising quality."""

    cascade: tuple[OperatingPoint, ...]
    fixed_chain: tuple[OperatingPoint, ...]
    best_single_model: str
    best_single_quality: float
    info: dict[str, Any] = field(default_factory=dict)

    def absolute(self, target: QualityTarget) -> float:
        return target.value * self.best_single_quality if target.kind == "relative" else target.value

    def point_for(self, target: QualityTarget, which: str = "cascade") -> tuple[OperatingPoint, bool]:
        """(point, reachable): the cheapest point of the frontier whose validation quality meets the
        target; if none does, the best-quality point and ``reachable=False``."""
        points = self.cascade if which == "cascade" else self.fixed_chain
        if not points:
            raise ValueError(f"no {which} operating points")
        goal = self.absolute(target)
        for p in points:
            if p.validation_quality >= goal - 1e-12:
                return p, True
        return max(points, key=lambda p: p.validation_quality), False

    def save(self, path: Path) -> Path:
        data = {
            "format_version": OPERATING_POINTS_FORMAT,
            "best_single_model": self.best_single_model,
            "best_single_quality": self.best_single_quality,
            "cascade": [p.to_dict() for p in self.cascade],
            "fixed_chain": [p.to_dict() for p in self.fixed_chain],
            "info": self.info,
        }
        path.write_text(json.dumps(data, indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> OperatingPoints:
        d = json.loads(Path(path).read_text())
        if d.get("format_version") != OPERATING_POINTS_FORMAT:
            raise ValueError(f"{path}: unknown operating points format {d.get('format_version')!r}")
        return cls(
            cascade=tuple(OperatingPoint.from_dict(p) for p in d["cascade"]),
            fixed_chain=tuple(OperatingPoint.from_dict(p) for p in d["fixed_chain"]),
            best_single_model=d["best_single_model"],
            best_single_quality=float(d["best_single_quality"]),
            info=d.get("info", {}),
        )


def thin(items: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` of ``items``, evenly spaced, keeping the first and the last."""
    if len(items) <= k:
        return list(items)
    pos = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in pos]


def pareto_frontier(cost: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray) -> list[int]:
    """Indices of the points no other point beats (cheaper or equal with higher quality), sorted by
    cost: along the result the quality strictly rises."""
    c, q = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    order = np.lexsort((-q, c))  # by cost, then by quality descending
    # only a point above every earlier one (in that order) can be kept: a vectorised pre-filter, so the
    # exact loop below runs over the few candidates, not over millions of searched points
    qo = q[order]
    running = np.maximum.accumulate(np.where(np.isnan(qo), -np.inf, qo))
    before = np.concatenate([[-np.inf], running[:-1]])
    out: list[int] = []
    best = -np.inf
    for i in order[qo > before]:
        if q[i] > best + 1e-12:
            out.append(int(i))
            best = q[i]
    return out
