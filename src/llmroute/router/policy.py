"""Decision rules: from per-model probabilities and expected costs to one model per prompt.

Two rules, both vectorised over a batch, both honouring an eligibility mask:

- threshold: the cheapest eligible model whose probability of meeting the target is at least ``tau``;
  when none clears it, the eligible model with the highest probability (and ``cleared`` is False);
- utility: the eligible model maximising ``p - lam * expected_cost`` (``lam`` is the willingness to pay,
  in quality per USD: a smaller ``lam`` buys quality more readily).
"""

from __future__ import annotations

import numpy as np

RULES = ("threshold", "utility")
# Knob grids swept in evaluation and calibration; ordered from cheapest to most expensive behaviour.
THRESHOLD_GRID = np.round(np.linspace(0.0, 1.0, 101), 4)
UTILITY_GRID = np.concatenate([np.geomspace(1e5, 1e-2, 140), [0.0]])


def knob_grid(rule: str) -> np.ndarray:
    if rule == "threshold":
        return THRESHOLD_GRID
    if rule == "utility":
        return UTILITY_GRID
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")


def choose(
    rule: str, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
) -> tuple[np.ndarray, np.ndarray]:
    """Chosen model index per row and whether the choice cleared the rule's bar.

    Rows whose mask is all False get index -1.
    """
    n = probs.shape[0]
    p = np.where(mask, probs, -np.inf)
    any_ok = mask.any(axis=1)
    if rule == "utility":
        idx = np.argmax(p - knob * np.where(mask, costs, 0.0), axis=1)
        cleared = np.ones(n, dtype=bool)
    elif rule == "threshold":
        order = np.argsort(np.where(mask, costs, np.inf), axis=1, kind="stable")
        ok = np.take_along_axis(p >= knob, order, axis=1)
        first = np.argmax(ok, axis=1)
        cleared = ok[np.arange(n), first]
        idx = np.where(cleared, order[np.arange(n), first], np.argmax(p, axis=1))
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    return np.where(any_ok, idx, -1), cleared & any_ok


def sweep(rule: str, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(n, K) chosen model indices for every knob value of the rule's grid."""
    if mask is None:
        mask = np.ones_like(probs, dtype=bool)
    grid = knob_grid(rule)
    return np.stack([choose(rule, probs, costs, mask, float(k))[0] for k in grid], axis=1)


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
    while ok.any():
        j = int(choose(rule, p, c, ok[None, :], knob)[0][0])
        order.append(j)
        ok[j] = False
    return order
