"""The background writer: submit never blocks, close flushes everything, refusals are counted."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest

from llmroute.data.decision_log import DecisionLogStore, DecisionLogWriter, LogRecord
from tests.decision_log.helpers import decision, outcome


class _SlowSink:
    """A sink that takes ``delay_s`` per batch, or blocks until released."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None, fail: int = 0) -> None:
        self.delay_s, self.gate, self.fail = delay_s, gate, fail
        self.records: list[LogRecord] = []

    def write_many(self, records: list[LogRecord]) -> int:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        if self.fail:
            self.fail -= 1
            raise OSError("database is down")
        self.records.extend(records)
        return len(records)


def test_submit_never_blocks_and_close_flushes_all(sqlite_url: str) -> None:
    n = 10_000
    records = [decision(i) for i in range(n)]
    with DecisionLogStore(sqlite_url) as store:
        writer = DecisionLogWriter(store, batch_size=500, max_queue=n).start()
        times = []
        t0 = time.perf_counter()
        for r in records:
            s = time.perf_counter()
            assert writer.submit(r)
            times.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
        stats = writer.close()
        assert total / n < 100e-6, f"{total / n * 1e6:.1f} us per submit"
        # no submit waits for a write; single outliers are GIL/scheduler hiccups, not I/O
        assert sorted(times)[int(0.99 * n)] < 1e-3
        assert stats.submitted == stats.written == n and stats.dropped == stats.failed == stats.pending == 0
        assert store.counts()["decisions"] == n


def test_submit_does_not_wait_for_a_slow_database() -> None:
    sink = _SlowSink(delay_s=0.25)
    records = [outcome(i) for i in range(200)]
    with DecisionLogWriter(sink, batch_size=50, flush_interval_s=0.01) as writer:
        gc.disable()  # a full collection of a big test process's heap can pause for longer than the bound
        try:
            t0 = time.perf_counter()
            for record in records:
                writer.submit(record)
            elapsed = time.perf_counter() - t0
        finally:
            gc.enable()
        assert elapsed < 0.5  # 4 batches x 0.25 s of "database" time would be 1 s
    assert len(sink.records) == 200


def test_full_queue_refuses_new_records_counts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    sink = _SlowSink(gate=gate)
    writer = DecisionLogWriter(sink, batch_size=1, flush_interval_s=0.01, max_queue=5).start()
    with caplog.at_level(logging.WARNING, logger="llmroute.data.decision_log.writer"):
        results = [writer.submit(outcome(i)) for i in range(20)]
    assert results.count(False) >= 20 - 5 - 1  # the queue, plus one record the thread is holding
    assert writer.dropped == results.count(False)
    assert "queue full" in caplog.text
    gate.set()
    stats = writer.close()
    accepted = [f"d{i:06d}" for i, ok in enumerate(results) if ok]
    assert [r.decision_id for r in sink.records] == accepted  # the oldest are kept, never replaced
    assert stats.written == len(accepted) and stats.pending == 0


def test_flush_waits_for_earlier_records() -> None:
    sink = _SlowSink()
    with DecisionLogWriter(sink, batch_size=1000, flush_interval_s=60) as writer:
        for i in range(7):
            writer.submit(outcome(i))
        assert writer.flush(timeout=5)
        assert len(sink.records) == 7


def test_failed_batches_are_retried_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    sink = _SlowSink(fail=2)
    with DecisionLogWriter(sink, batch_size=5, retry_backoff_s=0.001, max_retries=3) as writer:
        for i in range(5):
            writer.submit(outcome(i))
        writer.flush()
    assert len(sink.records) == 5 and writer.stats().failed == 0
    down = _SlowSink(fail=100)
    with caplog.at_level(logging.ERROR), DecisionLogWriter(down, retry_backoff_s=0.001, max_retries=1) as w:
        w.submit(outcome(1))
        w.flush()
        assert w.stats().failed == 1 and w.stats().pending == 0
    assert "counted as failed" in caplog.text


def test_submit_after_close_is_counted_not_raised() -> None:
    writer = DecisionLogWriter(_SlowSink()).start()
    writer.close()
    assert writer.submit(outcome(1)) is False and writer.dropped == 1


def test_one_bad_record_does_not_sink_its_batch(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    poison = outcome(3, attempts=({"model": "small", "client": object()},))  # not JSON-serialisable
    with DecisionLogStore(sqlite_url) as store:
        with caplog.at_level(logging.ERROR), DecisionLogWriter(store, retry_backoff_s=0.001, max_retries=1) as w:
            for i in range(6):
                w.submit(poison if i == 3 else outcome(i))
            w.flush()
            assert (w.stats().written, w.stats().failed) == (5, 1)
        assert store.counts()["outcomes"] == 5
    assert "could not write a OutcomeRecord for decision d000003" in caplog.text


def test_submit_rejects_non_records() -> None:
    with DecisionLogWriter(_SlowSink()) as w, pytest.raises(TypeError, match="not a decision-log record"):
        w.submit({"decision_id": "x"})  # type: ignore[arg-type]
