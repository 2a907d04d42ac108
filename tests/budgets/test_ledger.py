"""The spend ledger on SQLite and PostgreSQL: idempotent charges, atomic increments under threads, alerts
claimed once, budget definitions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from tests.decision_log.conftest import pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])  # PostgreSQL: a server
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def test_charges_are_counted_once_and_summed_per_subject_and_window(log_url: str) -> None:
    now = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        assert ledger.charge(Charge("d1", 0.5, now, "chat", "acme", "bob", "k1"))
        assert not ledger.charge(Charge("d1", 0.5, now, "feedback", "acme", "bob", "k1"))  # the same charge id
        assert ledger.charge(Charge("d2", 0.25, now + timedelta(hours=1), "chat", "acme"))
        assert ledger.charge(Charge("d3", 1.0, now - timedelta(days=3), "chat", "acme"))
        with pytest.raises(ValueError, match="cost must be a number >= 0"):
            ledger.charge(Charge("d4", float("nan"), now, "chat"))
        day = (now.replace(hour=0, minute=0), now.replace(hour=0, minute=0) + timedelta(days=1))
        got = ledger.spend([("tenant", "acme", *day), ("user", "bob", *day), ("key", "k1", *day),
                            ("global", "*", now - timedelta(days=7), now + timedelta(days=1)), ("tenant", "zed", *day)])
        assert got == [(pytest.approx(0.75), 2), (pytest.approx(0.5), 1), (pytest.approx(0.5), 1),
                       (pytest.approx(1.75), 3), (0.0, 0)]
        assert ledger.charges_total() == (pytest.approx(1.75), 3)


def test_concurrent_charges_lose_nothing(log_url: str) -> None:
    now = datetime.now(UTC)
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        with ThreadPoolExecutor(8) as pool:  # 400 charges, many twice, from 8 threads
            booked = list(pool.map(lambda i: ledger.charge(Charge(f"c{i % 300}", 0.01, now, "chat", "t")), range(400)))
        assert sum(booked) == 300
        ((spent, calls),) = ledger.spend([("tenant", "t", now - timedelta(hours=1), now + timedelta(hours=1))])
        assert calls == 300 and spent == pytest.approx(3.0, abs=1e-9)


def test_a_batch_of_charges_is_one_transaction_with_the_same_spend_as_one_by_one(log_url: str) -> None:
    now = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        assert ledger.charge(Charge("a0", 0.5, now, "chat", "acme"))
        batch = [Charge("a0", 9.0, now, "chat", "acme"),  # booked before the batch
                 Charge("a1", 0.25, now, "chat", "acme", "bob"), Charge("a2", 0.125, now, "chat", "acme"),
                 Charge("a1", 7.0, now, "chat", "acme"),  # twice in one batch: the first counts
                 Charge("a3", 1.0, now + timedelta(hours=1), "chat", "zed")]
        assert ledger.charge_many(batch) == [False, True, True, False, True]
        assert ledger.charge_many([]) == []
        day = (now.replace(hour=0, minute=0), now.replace(hour=0, minute=0) + timedelta(days=1))
        assert ledger.spend([("tenant", "acme", *day), ("user", "bob", *day), ("tenant", "zed", *day),
                             ("global", "*", *day)]) == [
            (pytest.approx(0.875), 3), (pytest.approx(0.25), 1), (pytest.approx(1.0), 1), (pytest.approx(1.875), 4)]
        # all or nothing: a bad cost anywhere in a batch books none of it
        with pytest.raises(ValueError, match="charge b2: cost must be a number >= 0, got -1"):
            ledger.charge_many([Charge("b1", 0.5, now, "chat"), Charge("b2", -1.0, now, "chat")])
        assert ledger.charges_total() == (pytest.approx(1.875), 4)


def test_a_batch_that_fails_in_the_database_books_nothing_and_the_next_one_is_booked(log_url: str) -> None:
    now = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        good_sql = ledger._add_spend_sql
        ledger._add_spend_sql = good_sql.replace("budget_spend", "no_such_table", 1)  # fails after the inserts
        with pytest.raises(Exception, match="no_such_table"):
            ledger.charge_many([Charge("f1", 0.5, now, "chat"), Charge("f2", 0.25, now, "chat")])
        assert ledger.charges_total() == (0.0, 0)  # the charge rows inserted before the error were rolled back
        ledger._add_spend_sql = good_sql
        assert ledger.charge_many([Charge("f1", 0.5, now, "chat")]) == [True]  # the pooled connection is usable
        day = (now.replace(hour=0, minute=0), now.replace(hour=0, minute=0) + timedelta(days=1))
        assert ledger.spend([("global", "*", *day)]) == [(pytest.approx(0.5), 1)]
        assert ledger.charges_total() == (pytest.approx(0.5), 1)


def test_alerts_are_claimed_once_and_budgets_stored(log_url: str) -> None:
    now = datetime(2026, 6, 10, tzinfo=UTC)
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        with ThreadPoolExecutor(4) as pool:
            claims = list(pool.map(lambda _: ledger.claim_alert("b", now, "threshold:0.5", now), range(8)))
        assert sum(claims) == 1 and ledger.fired_alerts("b", now) == {"threshold:0.5"}
        assert ledger.fired_alerts("b", now + timedelta(days=30)) == set()
        ledger.put_budget("api-one", {"name": "api-one", "tenant": "x", "amount_usd": 1}, "api")
        ledger.sync_file_budgets([("f1", {"name": "f1", "user": "u", "amount_usd": 2}),
                                  ("f2", {"name": "f2", "user": "v", "amount_usd": 2})])
        ledger.sync_file_budgets([("f2", {"name": "f2", "user": "v", "amount_usd": 3})])
        stored = {b.name: b for b in ledger.list_budgets()}
        assert set(stored) == {"api-one", "f2"} and stored["f2"].spec["amount_usd"] == 3
        assert stored["api-one"].source == "api" and stored["f2"].source == "file"
        assert ledger.delete_budget("api-one") and not ledger.delete_budget("api-one")


def test_on_sqlite_a_charge_waits_for_the_write_lock_and_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    import sqlite3
    import threading
    import time

    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    now = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
    with DecisionLogStore(url) as store:
        ledger = BudgetLedger(store.engine)
        holder = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another writer (the decision log's) holds the write lock
        released = threading.Timer(0.3, holder.execute, ("COMMIT",))
        t0 = time.monotonic()  # before the timer starts: the lock is released no sooner than t0 + 0.3 s
        released.start()
        assert ledger.charge_many([Charge("w1", 0.5, now, "chat")]) == [True]  # waited, then booked
        assert time.monotonic() - t0 >= 0.3
        released.join()
        with store.engine.connect() as conn:  # the pooled connection got its busy timeout back
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert ledger.charges_total() == (pytest.approx(0.5), 1)

        short = sa.create_engine(url)  # a busy timeout of 200 ms: a lock held longer fails the charge
        sa.event.listen(short, "connect", lambda c, _: c.execute("PRAGMA busy_timeout=200"))
        holder.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            BudgetLedger(short).charge_many([Charge("w2", 0.25, now, "chat")])
        assert 0.15 <= time.monotonic() - t0 < 10
        holder.execute("COMMIT")
        holder.close()
        short.dispose()
        assert ledger.charges_total() == (pytest.approx(0.5), 1)  # nothing of the failed batch
