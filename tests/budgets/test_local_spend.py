"""LocalSpend: the running sums answer what a walk over every charge answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from llmroute.budgets.local_spend import LocalSpend

T0 = datetime(2026, 12, 1, 23, 59, 58, tzinfo=UTC)
KEYS = [("global", "*"), ("tenant", "acme"), ("tenant", "beta"), ("user", "u1")]


def _walk(charges: list[tuple[int, list[tuple[str, str]], float, datetime]], key: tuple[str, str], after: int,
          start: datetime, end: datetime) -> tuple[float, int]:
    got = [cost for seq, keys, cost, at in charges if seq > after and key in keys and start <= at < end]
    return sum(got), len(got)


def test_since_equals_a_walk_through_adds_and_forgets() -> None:
    rng = random.Random(7)
    local, charges, forgotten = LocalSpend(), [], 0
    for seq in range(1, 3001):
        if rng.random() < 0.01:  # a ledger read was taken: what it saw is dropped
            forgotten = rng.randint(forgotten, seq - 1)
            local.forget_through(forgotten)
            charges = [c for c in charges if c[0] > forgotten]
        keys = [KEYS[0], *rng.sample(KEYS[1:], rng.randint(0, 3))]
        at = T0 + timedelta(milliseconds=seq)  # across midnight: windows cut the charges
        cost = rng.choice([0.0, 0.001, 0.37, 1e-7])
        local.add(seq, keys, cost, at)
        charges.append((seq, keys, cost, at))
        key = rng.choice(KEYS)
        after = rng.randint(forgotten, seq)
        start = T0 + timedelta(milliseconds=rng.randint(0, seq + 10))
        end = start + timedelta(milliseconds=rng.randint(0, 2000))
        spent, calls = local.since(key, after, start, end)
        want_spent, want_calls = _walk(charges, key, after, start, end)
        assert calls == want_calls and spent == pytest.approx(want_spent, abs=1e-9)


def test_unknown_key_forgotten_charges_and_a_falling_sequence() -> None:
    local = LocalSpend()
    end = T0 + timedelta(days=1)
    assert local.since(("tenant", "nobody"), 0, T0, end) == (0.0, 0)
    local.add(1, [KEYS[0], KEYS[1], KEYS[1]], 2.0, T0)  # a key named twice counts the charge once
    local.add(2, [KEYS[0]], 3.0, T0)
    assert local.since(KEYS[1], 0, T0, end) == (2.0, 1)
    assert local.since(KEYS[0], 1, T0, end) == (3.0, 1)
    local.forget_through(1)
    assert local.since(KEYS[1], 0, T0, end) == (0.0, 0) and local.since(KEYS[0], 0, T0, end) == (3.0, 1)
    with pytest.raises(ValueError, match="must rise: 2 after 2"):
        local.add(2, [KEYS[0]], 1.0, T0)


def test_a_charge_stamped_before_the_last_one_is_filed_at_the_later_time() -> None:
    local = LocalSpend()
    midnight = T0 + timedelta(seconds=2)
    local.add(1, [KEYS[0]], 1.0, midnight + timedelta(milliseconds=5))  # booked first, stamped later
    local.add(2, [KEYS[0]], 2.0, midnight - timedelta(milliseconds=5))  # stamped before midnight
    assert local.since(KEYS[0], 0, midnight, midnight + timedelta(days=1)) == (3.0, 2)
    assert local.since(KEYS[0], 0, T0, midnight) == (0.0, 0)
