"""Decision rules: the seam between predicted (probability, cost) per model and the one model chosen.

A rule is a :class:`DecisionRule` subclass registered under its ``name`` with :func:`register_rule`;
everything that routes, calibrates, evaluates or re-plays decisions looks rules up here by the name a
router or a logged decision carries (:func:`get_rule`, :func:`rule_names`), so a new rule is one class
and one registration: training builds a knob table for every registered rule, routing and the service
use it by name, evaluation sweeps it, off-policy evaluation recovers its logged choices.

The two built-in rules, both vectorised over a batch, both honouring an eligibility mask:

- ``threshold``: the cheapest eligible model whose probability of meeting the target is at least the
  knob ``tau``; when none clears it, the eligible model with the highest probability (``cleared`` False).
  Its knob is a probability bar, so a request's ``confidence`` routes with it (:data:`CONFIDENCE_RULE`);
- ``utility``: the eligible model maximising ``p - lam * expected_cost`` (``lam`` is the willingness to
  pay, in quality per USD: a smaller ``lam`` buys quality more readily).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

CONFIDENCE_RULE = "threshold"
"""The rule a request's ``confidence`` routes with: its knob is that P(meets target) bar."""


class UnknownRuleError(ValueError):
    """A rule name that is not registered."""


class DecisionRule(ABC):
    """One decision rule (see module docstring).

    Contract every rule keeps, relied on by calibration, evaluation and exploration:

    - ``grid``: the knob values swept in calibration and evaluation, ordered from the cheapest to the
      most expensive behaviour (the knob table's monotone curve depends on that order);
    - :meth:`choose` never picks a masked model; a row whose mask is all False gets index -1 and
      ``cleared`` False; ties go to the earlier model;
    - ``knob_is_probability_bar``: True when the knob is the P(meets target) a chosen model must reach
      (the model "clears the target" when it does); False otherwise.
    """

    name: ClassVar[str]
    grid: ClassVar[np.ndarray]
    knob_is_probability_bar: ClassVar[bool] = False

    def choose(
        self, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n,) chosen model index per row and (n,) whether the choice cleared the rule's bar, for
        ``probs``, ``costs`` and ``mask`` of shape (n, m). Rows with no eligible model get -1 / False."""
        idx, cleared = self._choose(probs, costs, mask, knob)
        any_ok = mask.any(axis=1)
        return np.where(any_ok, idx, -1), cleared & any_ok

    @abstractmethod
    def _choose(
        self, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rule itself on rows with at least one eligible model (others are overwritten)."""

    @abstractmethod
    def explain(self, knob: float, cleared: bool) -> str:
        """The head of a decision's reason text: why this rule at this knob chose the model it chose."""


_RULES: dict[str, type[DecisionRule]] = {}


def register_rule(cls: type[DecisionRule]) -> type[DecisionRule]:
    """Register ``cls`` under ``cls.name`` (usable as a class decorator). A name can be registered once;
    registering the same class again is a no-op. Raises ValueError for a clash or a rule without a name
    or grid."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"decision rule {cls.__qualname__} has no name")
    if not isinstance(getattr(cls, "grid", None), np.ndarray) or cls.grid.ndim != 1 or not len(cls.grid):
        raise ValueError(f"decision rule {name!r} needs a non-empty 1-D numpy grid of knob values")
    known = _RULES.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"decision rule {name!r} is already registered ({known.__qualname__})")
    _RULES[name] = cls
    return cls


def unregister_rule(name: str) -> None:
    """Remove the rule registered as ``name`` (for tests and plug-ins that registered one); the built-in
    rules cannot be removed."""
    if name in BUILTIN_RULES:
        raise ValueError(f"the built-in decision rule {name!r} cannot be unregistered")
    _RULES.pop(name, None)


def rule_names() -> tuple[str, ...]:
    """Names of the registered rules, built-ins first, then in registration order."""
    return tuple(_RULES)


def is_rule(name: object) -> bool:
    """Whether ``name`` names a registered rule."""
    return isinstance(name, str) and name in _RULES


def get_rule(name: str) -> DecisionRule:
    """The rule registered as ``name``. Raises :class:`UnknownRuleError` naming the known rules."""
    cls = _RULES.get(name)
    if cls is None:
        raise UnknownRuleError(f"unknown rule {name!r}; expected one of {rule_names()}")
    return cls()


# ---- the built-in rules ---------------------------------------------------------------------------


@register_rule
class ThresholdRule(DecisionRule):
    """The cheapest eligible model with ``p >= knob``; else the eligible model with the highest ``p``."""

    name = "threshold"
    grid = np.round(np.linspace(0.0, 1.0, 101), 4)
    knob_is_probability_bar = True

    def _choose(
        self, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = probs.shape[0]
        p = np.where(mask, probs, -np.inf)
        order = np.argsort(np.where(mask, costs, np.inf), axis=1, kind="stable")
        ok = np.take_along_axis(p >= knob, order, axis=1)
        first = np.argmax(ok, axis=1)
        cleared = ok[np.arange(n), first]
        return np.where(cleared, order[np.arange(n), first], np.argmax(p, axis=1)), cleared

    def explain(self, knob: float, cleared: bool) -> str:
        if cleared:
            return f"cheapest eligible model with P(meets target) >= {knob:.2f}"
        return (
            f"no eligible model reaches P(meets target) >= {knob:.2f}; "
            "chose the eligible model with the best expected quality"
        )


@register_rule
class UtilityRule(DecisionRule):
    """The eligible model maximising ``p - knob * expected_cost``; it always clears."""

    name = "utility"
    grid = np.concatenate([np.geomspace(1e5, 1e-2, 140), [0.0]])

    def _choose(
        self, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
    ) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(mask, probs, -np.inf)
        idx = np.argmax(p - knob * np.where(mask, costs, 0.0), axis=1)
        return idx, np.ones(probs.shape[0], dtype=bool)

    def explain(self, knob: float, cleared: bool) -> str:
        return f"maximises P(meets target) - {knob:.4g} x expected cost among eligible models"


BUILTIN_RULES: tuple[str, ...] = ("threshold", "utility")
