"""Budget charges by group commit (serving/ledger_writer.py): one transaction at a time, every waiting
charge in the next one, each caller answered once its transaction committed.

The regression this guards: one transaction per chat request, run from many threads at once, queued
for SQLite's write lock and made the proxy's p99 at concurrency 32 (up to 1.9 s a charge)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from llmroute.serving.ledger_writer import ChargeWriter

NOW = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)


class GatedLedger:
    """A ledger whose transactions wait for a gate, and that records how many ran at once."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.gate = threading.Event()
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_at_once = 0
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def charge_many(self, charges: Sequence[Charge]) -> list[bool]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.gate.wait(10)
            ids = [c.charge_id for c in charges]
            self.batches.append(ids)
            if self.fail_on in ids:
                raise RuntimeError("database is locked")
            return [not c.charge_id.startswith("seen") for c in charges]
        finally:
            with self._lock:
                self.running -= 1


async def _until(cond: object, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():  # type: ignore[operator]
        assert loop.time() < end
        await asyncio.sleep(0.005)


def test_charges_that_arrive_during_a_transaction_share_the_next_one() -> None:
    async def main() -> None:
        ledger = GatedLedger()
        writer = ChargeWriter(ledger, max_batch=4)  # type: ignore[arg-type]
        first = asyncio.ensure_future(writer.book(Charge("c0", 0.1, NOW, "chat")))
        await _until(lambda: ledger.running == 1)  # the first transaction is open, and holds c0 alone
        rest = [asyncio.ensure_future(writer.book(Charge(i, 0.1, NOW, "chat")))
                for i in ("c1", "seen2", "c3", "c4", "c5")]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in [first, *rest])  # nobody is answered before its commit
        ledger.gate.set()
        assert await first is True
        assert await asyncio.gather(*rest) == [True, False, True, True, True]
        assert ledger.batches == [["c0"], ["c1", "seen2", "c3", "c4"], ["c5"]]  # at most max_batch a transaction
        assert ledger.most_at_once == 1 and writer.transactions == 3

    asyncio.run(main())


def test_a_failed_transaction_fails_its_batch_only_and_a_cancelled_caller_is_still_booked() -> None:
    async def main() -> None:
        ledger = GatedLedger(fail_on="bad")
        writer = ChargeWriter(ledger)  # type: ignore[arg-type]
        first = asyncio.ensure_future(writer.book(Charge("c0", 0.1, NOW, "chat")))
        await _until(lambda: ledger.running == 1)
        gone = asyncio.ensure_future(writer.book(Charge("c1", 0.1, NOW, "chat")))
        bad = asyncio.ensure_future(writer.book(Charge("bad", 0.1, NOW, "chat")))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client hung up: its charge stays queued
        ledger.gate.set()
        assert await first is True
        with pytest.raises(RuntimeError, match="database is locked"):
            await bad
        assert gone.cancelled()
        assert ledger.batches == [["c0"], ["c1", "bad"]]
        assert await writer.book(Charge("c2", 0.1, NOW, "chat")) is True  # the writer goes on after an error
        with pytest.raises(ValueError, match="charge c3: cost must be a number >= 0"):
            await writer.book(Charge("c3", float("nan"), NOW, "chat"))  # refused alone, before any batch
        assert ledger.batches[-1] == ["c2"]

    asyncio.run(main())


def test_concurrent_charges_through_the_writer_are_booked_once_in_sqlite(tmp_path: Path) -> None:
    async def main(ledger: BudgetLedger) -> list[bool]:
        writer = ChargeWriter(ledger)
        booked = await asyncio.gather(*(writer.book(Charge(f"d{i % 150}", 0.01, NOW, "chat", "t")) for i in range(200)))
        assert writer.transactions < 200  # group commit: fewer transactions than charges
        return booked

    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        ledger = BudgetLedger(store.engine)
        booked = asyncio.run(main(ledger))
        assert sum(booked) == 150
        assert ledger.charges_total() == (pytest.approx(1.5), 150)


def test_charges_nobody_waits_for_linger_for_company_and_an_urgent_one_ends_the_wait() -> None:
    async def main() -> None:
        ledger = GatedLedger()
        ledger.gate.set()
        writer = ChargeWriter(ledger, linger_s=0.3)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        quiet = [asyncio.ensure_future(writer.book(Charge(f"q{i}", 0.1, NOW, "chat"), urgent=False)) for i in range(3)]
        await asyncio.sleep(0.05)
        more = asyncio.ensure_future(writer.book(Charge("q3", 0.1, NOW, "chat"), urgent=False))
        assert await asyncio.gather(*quiet, more) == [True] * 4
        assert loop.time() - t0 >= 0.29  # they waited the linger out, from the first one
        assert ledger.batches == [["q0", "q1", "q2", "q3"]]  # and shared one transaction

        t0 = loop.time()
        waiting = asyncio.ensure_future(writer.book(Charge("q4", 0.1, NOW, "chat"), urgent=False))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await writer.book(Charge("u5", 0.1, NOW, "chat")) is True  # urgent: booked at once, with q4
        assert await waiting is True and loop.time() - t0 < 0.25
        assert ledger.batches[-1] == ["q4", "u5"]

        writer.hurry()  # at shutdown: nothing lingers any more
        t0 = loop.time()
        assert await writer.book(Charge("q6", 0.1, NOW, "chat"), urgent=False) is True
        assert loop.time() - t0 < 0.25 and ledger.batches[-1] == ["q6"]
        with pytest.raises(ValueError, match="linger_s"):
            ChargeWriter(ledger, linger_s=-1)  # type: ignore[arg-type]

    asyncio.run(main())
