"""Decision rules applied by name: from per-model probabilities and expected costs to one model per prompt.

The rules themselves live in :mod:`llmroute.router.decision_rules` (a :class:`DecisionRule` per rule and a
name -> class registry); the functions here look the rule up by name and apply it to a batch
(:func:`choose`), to a rule's whole knob grid (:func:`sweep`) or to one decision in order of preference
(:func:`ranking`). An unknown rule name raises :class:`~llmroute.router.decision_rules.UnknownRuleError`
(a ValueError) naming the registered rules.
"""

from __future__ import annotations

import numpy as np

from llmroute.router.decision_rules import get_rule, is_rule, rule_names

__all__ = ["choose", "is_rule", "knob_grid", "ranking", "rule_names", "sweep"]


def knob_grid(rule: str) -> np.ndarray:
    """The knob values ``rule`` is swept over, ordered from cheapest to most expensive behaviour."""
    return get_rule(rule).grid


def choose(
    rule: str, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
) -> tuple[np.ndarray, np.ndarray]:
    """Chosen model index per row and whether the choice cleared the rule's bar.

    Rows whose mask is all False get index -1.
    """
    return get_rule(rule).choose(probs, costs, mask, knob)


def sweep(rule: str, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(n, K) chosen model indices for every knob value of the rule's grid."""
    if mask is None:
        mask = np.ones_like(probs, dtype=bool)
    r = get_rule(rule)
    return np.stack([r.choose(probs, costs, mask, float(k))[0] for k in r.grid], axis=1)


def ranking(
    rule: str, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float, first: int | None = None
) -> list[int]:
    """The eligible model indices of one decision in the rule's order of preference.

    Defined by successive removal: the rule's choice (:func:`choose`), then its choice once that model
    is made ineligible, and so on. For the threshold rule this is the models with ``p >= knob`` from
    cheapest to dearest, then the others by decreasing ``p``; for the utility rule, decreasing
    ``p - knob * cost``; ties go to the earlier model. ``first`` puts that index first (the model a
    decision actually chose, when it was not the rule's own choice). ``probs``, ``costs``, ``mask``
    are 1-D (one decision).
    """
    ok = np.asarray(mask, dtype=bool).copy()
    p, c = np.asarray(probs, dtype=float)[None, :], np.asarray(costs, dtype=float)[None, :]
    order: list[int] = []
    if first is not None and ok[first]:
        order.append(first)
        ok[first] = False
    r = get_rule(rule)
    while ok.any():
        j = int(r.choose(p, c, ok[None, :], knob)[0][0])
        order.append(j)
        ok[j] = False
    return order
