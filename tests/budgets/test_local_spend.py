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


def test_a_reader_in_another_thread_sees_whole_charges_while_they_are_added_and_forgotten() -> None:
    """The service adds on its event loop while compute threads check budgets: a check never fails and
    never counts a charge twice or half, whatever the thread switches (made very frequent here)."""
    import sys
    import threading

    local, done, seen, errors = LocalSpend(), threading.Event(), [], []
    end = T0 + timedelta(days=1)

    def read() -> None:
        while not done.is_set():
            try:
                spent, calls = local.since(KEYS[0], 0, T0, end)
                seen.append(calls)
                assert spent == pytest.approx(calls * 0.5), (spent, calls)  # every charge costs 0.5
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for seq in range(1, 20_001):
            local.add(seq, [KEYS[0], KEYS[1]], 0.5, T0)
            if seq % 50 == 0:
                local.forget_through(seq - 25)  # the charges a ledger read saw: later checks count from its total
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert len(seen) > 100 and max(seen) <= 75
