"""Assignment: deterministic, sticky, independent across experiments, and true to the weights."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from scipy import stats

from llmroute.abtest.assignment import (
    arm_for_bucket,
    arm_label,
    assign,
    bucket,
    parse_arm_label,
    unit_value,
)
from llmroute.abtest.experiment import Arm, Experiment


def _exp(weights: tuple[float, ...] = (1, 1), name: str = "exp", **kw: object) -> Experiment:
    arms = tuple(Arm(f"a{i}", w, control=i == 0, always="m") for i, w in enumerate(weights))
    return Experiment(name=name, unit="user", arms=arms, **kw)  # type: ignore[arg-type]


def test_deterministic_and_sticky() -> None:
    exp = _exp((1, 1, 1))
    first = [assign(exp, f"user-{i}") for i in range(200)]
    again = [assign(exp, f"user-{i}") for i in reversed(range(200))][::-1]
    assert [a.served for a in first if a] == [a.served for a in again if a]
    assert all(a is not None and a.sticky and not a.diverted for a in first)
    # a fixed expectation, so a change of the hash (which would reshuffle live users) fails loudly
    assert bucket("exp", "user-1") == int.from_bytes(
        __import__("hashlib").sha256(b"exp:user-1").digest()[:8], "big") / 2**64
    assert {a.served for a in first if a} == {"a0", "a1", "a2"}


def test_experiments_hash_independently() -> None:
    a = [arm_for_bucket(_exp(name="one"), bucket("one", f"u{i}")) for i in range(2000)]
    b = [arm_for_bucket(_exp(name="two"), bucket("two", f"u{i}")) for i in range(2000)]
    agree = np.mean([x == y for x, y in zip(a, b)])
    assert 0.45 < agree < 0.55  # independent 50/50 splits agree half the time


def test_weights_chi_square() -> None:
    weights = (5, 3, 2)
    exp = _exp(weights)
    n = 20_000
    arms = [arm_for_bucket(exp, bucket(exp.name, f"unit-{i}")) for i in range(n)]
    observed = np.array([arms.count(f"a{i}") for i in range(3)])
    expected = np.array(weights) / sum(weights) * n
    assert stats.chisquare(observed, expected).pvalue > 0.001
    # and the check has teeth: equal weights are rejected for this 50/30/20 split
    assert stats.chisquare(observed, np.full(3, n / 3)).pvalue < 1e-6


def test_changing_weights_moves_only_units_across_a_boundary() -> None:
    before, after = _exp((1, 1)), _exp((1, 3))
    moved = [arm_for_bucket(before, bucket("exp", f"u{i}")) != arm_for_bucket(after, bucket("exp", f"u{i}"))
             for i in range(4000)]
    assert 0.2 < np.mean(moved) < 0.3  # the share between 1/2 and 1/4 moves from a0 to a1


def test_missing_unit_is_random_not_sticky() -> None:
    exp = _exp()
    got = [assign(exp, None) for _ in range(400)]
    assert all(a is not None and not a.sticky and a.unit_value.startswith("random-") for a in got)
    share = np.mean([a.served == "a0" for a in got if a])
    assert 0.4 < share < 0.6
    assert unit_value("tenant", user="u", tenant=None, session="s") is None
    assert unit_value("session", user="u", tenant=None, session="s") == "s"


def test_window_and_stopped_arms() -> None:
    exp = _exp(start=datetime(2026, 1, 1, tzinfo=UTC), stop=datetime(2026, 2, 1, tzinfo=UTC))
    assert assign(exp, "u", now=datetime(2025, 12, 31, tzinfo=UTC)) is None
    assert assign(exp, "u", now=datetime(2026, 2, 1, tzinfo=UTC)) is None
    inside = datetime(2026, 1, 15, tzinfo=UTC)
    value = next(f"u{i}" for i in range(100) if arm_for_bucket(exp, bucket("exp", f"u{i}")) == "a1")
    normal = assign(exp, value, now=inside)
    assert normal is not None and normal.served == "a1" and normal.label == "exp:a1"
    stopped = assign(exp, value, now=inside, stopped={"a1"})
    assert stopped is not None and stopped.assigned == "a1" and stopped.served == "a0" and stopped.diverted
    assert stopped.label == "exp:a0<-a1" == arm_label("exp", "a0", "a1")
    assert parse_arm_label(stopped.label) == ("exp", "a0", "a1")
    assert parse_arm_label("exp:a1") == ("exp", "a1", "a1")
    assert parse_arm_label("no-experiment") is None
