"""The decision log's spool: nothing accepted is lost across database outages, a full disk, restarts
and kill -9; replays store each record once; poison records are set aside, not lost."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmroute.data.decision_log import DecisionLogStore, FeedbackRecord, LogRecord, OutcomeRecord
from llmroute.data.decision_log.spool import (
    REJECTED_NAME,
    SpooledWriter,
    SpoolUnavailable,
    decode_record,
    encode_record,
)
from tests.decision_log.helpers import decision


class Switchable:
    """A store whose writes fail while ``down`` (transient, like a stopped database) and refuse
    records whose prompt contains ``poison`` (like a data error); counts write attempts."""

    def __init__(self, store: DecisionLogStore) -> None:
        self.store = store
        self.down = False
        self.calls = 0

    def write_many(self, records: list[LogRecord]) -> int:
        self.calls += 1
        if self.down:
            raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        for r in records:
            if getattr(r, "prompt", None) and "poison" in r.prompt:  # type: ignore[union-attr]
                raise sa.exc.DataError("INSERT", {}, ValueError("bad data"))
        return self.store.write_many(records)


class Disk:
    """os.write / os.fsync that fail with ENOSPC while ``full``."""

    def __init__(self) -> None:
        self.full = False

    def write(self, fd: int, data: bytes) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)


def _wait_for(w: SpooledWriter, cond: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not cond(st := w.stats()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return st


def _ids(store: DecisionLogStore) -> list[str]:
    return [d.decision_id for batch in store.iter_decisions() for d in batch]


def test_records_round_trip_through_a_spool_line() -> None:
    d = decision(1, prompt="nul \x00 and a lone surrogate \ud800 and ünïcode")
    o = OutcomeRecord(decision_id="d000001", model="small", ok=False, error="x", attempts=({"model": "small", "ok": False},))
    f = FeedbackRecord(decision_id="d000001", quality=0.5, comment="fine")
    for r in (d, o, f):
        line = encode_record(r)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_record(line) == r


def test_database_outage_loses_nothing_and_stores_each_record_once(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = Switchable(store)
    with SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, retry_max_s=0.05) as w:
        for i in range(50):
            assert w.submit(decision(i))
        assert w.flush(10)
        sink.down = True
        for i in range(50, 300):
            assert w.submit(decision(i))
        st = _wait_for(w, lambda st: st.degraded == 1)
        assert "database" in (st.reason or "") and st.pending == 250 and st.failed == 0
        sink.down = False
        assert w.flush(10)
        st = w.stats()
    assert st.written == 300 and st.failed == 0 and st.dropped == 0 and st.degraded == 0
    assert sorted(_ids(store)) == [f"d{i:06d}" for i in range(300)]
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # all shipped: the segment is removed
    store.close()


def test_full_disk_holds_records_in_memory_and_refuses_durable_ones(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = Switchable(store)
    disk = Disk()
    with SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, retry_max_s=0.05,
                       disk_write=disk.write, disk_fsync=disk.fsync) as w:
        disk.full = True
        sink.down = True  # the database is down too: records wait in memory
        for i in range(100):
            assert w.submit(decision(i))
        fut = w.submit_durable(FeedbackRecord(decision_id="d000001", quality=1.0))
        with pytest.raises(SpoolUnavailable):
            fut.result(5)
        st = _wait_for(w, lambda st: "disk" in (st.reason or "") and st.held_in_memory == 100)
        assert st.degraded == 1
        sink.down = False  # the database is back while the disk is still full: shipped from memory
        assert w.flush(10)
        disk.full = False
        ok = w.submit_durable(FeedbackRecord(decision_id="d000002", quality=1.0))
        ok.result(5)
        assert w.flush(10)
        st = w.stats()
    assert st.written == 101 and st.degraded == 0
    assert len(_ids(store)) == 100 and store.counts()["feedback"] == 1
    store.close()


def test_memory_bound_refuses_new_records_only(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = Switchable(store)
    disk = Disk()
    disk.full = sink.down = True
    with SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, retry_max_s=0.05, max_memory_records=20,
                       disk_write=disk.write, disk_fsync=disk.fsync) as w:
        results = [w.submit(decision(i)) for i in range(30)]
        assert results.count(True) == 20 and not w.accepting()
        disk.full = sink.down = False
        assert w.flush(10)
        st = w.stats()
    assert st.dropped == 10 and st.written == 20
    assert sorted(_ids(store)) == [f"d{i:06d}" for i in range(20)]
    store.close()


def test_records_left_in_the_spool_are_replayed_by_the_next_writer(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = Switchable(store)
    sink.down = True
    w = SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, retry_max_s=0.05).start()
    for i in range(120):
        w.submit(decision(i))
    w.submit_durable(FeedbackRecord(decision_id="d000003", quality=0.25)).result(5)
    st = w.close(timeout=0.5)
    assert st.written == 0 and st.pending == 121
    assert len(list((tmp_path / "spool").glob("spool-*.jsonl"))) == 1
    with SpooledWriter(store, tmp_path / "spool", sync_interval_s=0.01) as w2:
        deadline = time.monotonic() + 10
        while w2.stats().replayed < 121 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w2.stats().replayed == 121
        time.sleep(0.3)  # the adopted segment is deleted once shipped
        assert len(list((tmp_path / "spool").glob("spool-*.jsonl"))) == 1  # w2's own
    assert len(_ids(store)) == 120 and store.counts()["feedback"] == 1
    store.close()


def test_a_replay_after_a_lost_offset_stores_each_record_once(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    spool = tmp_path / "spool"
    w = SpooledWriter(store, spool, sync_interval_s=0.01).start()
    for i in range(40):
        w.submit(decision(i))
    w.submit(FeedbackRecord(decision_id="d000001", quality=1.0, feedback_id="f1"))
    assert w.flush(10)
    # a crash between a commit and saving its offset: the segment is kept and its marker lost
    [segment] = spool.glob("spool-*.jsonl")
    kept = segment.read_bytes()
    w.close()
    segment.write_bytes(kept + b'{"k":"d","r":{"decision_id":"torn')  # and a torn last line
    for marker in spool.glob("*.done"):
        marker.unlink()
    with SpooledWriter(store, spool, sync_interval_s=0.01) as w2:
        deadline = time.monotonic() + 10
        while w2.stats().replayed < 41 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w2.stats().replayed == 41 and w2.stats().failed == 0
    assert sorted(_ids(store)) == [f"d{i:06d}" for i in range(40)]
    assert store.counts() == {"decisions": 40, "outcomes": 0, "feedback": 1}
    store.close()


def test_poison_records_are_set_aside_and_the_rest_written(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    with SpooledWriter(Switchable(store), tmp_path / "spool", sync_interval_s=0.01) as w:
        for i in range(20):
            w.submit(decision(i, prompt="poison pill" if i in (3, 11) else None))
        assert w.flush(10)
        st = w.stats()
    assert st.written == 18 and st.failed == 2
    assert len(_ids(store)) == 18
    rejected = [json.loads(line) for line in (tmp_path / "spool" / REJECTED_NAME).read_text().splitlines()]
    assert len(rejected) == 2 and all("DataError" in r["error"] for r in rejected)
    assert {decode_record(r["line"].encode()).decision_id for r in rejected} == {"d000003", "d000011"}
    store.close()


def test_live_segments_are_never_adopted_by_another_writer(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = Switchable(store)
    sink.down = True
    spool = tmp_path / "spool"
    with SpooledWriter(sink, spool, sync_interval_s=0.01, retry_max_s=0.05) as w1:
        for i in range(10):
            w1.submit(decision(i))
        time.sleep(0.1)
        with SpooledWriter(store, spool, sync_interval_s=0.01) as w2:
            time.sleep(0.2)
            assert w2.stats().replayed == 0  # w1 is alive and holds its segment's lock
        assert _ids(store) == []
        sink.down = False
        assert w1.flush(10)
    assert len(_ids(store)) == 10
    store.close()


_CHILD = textwrap.dedent("""
    import sys, time
    import sqlalchemy as sa
    from llmroute.data.decision_log.spool import SpooledWriter
    from tests.decision_log.helpers import decision

    class Down:
        def write_many(self, records):
            raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("down"))

    w = SpooledWriter(Down(), sys.argv[1], sync_interval_s=0.05, retry_max_s=0.05).start()
    i = 0
    t0 = time.monotonic()
    while True:
        w.submit(decision(i))
        i += 1
        if i % 50 == 0:
            print(i, time.monotonic() - t0, flush=True)
        time.sleep(0.001)
""")


def test_kill_9_loses_at_most_the_last_sync_interval(tmp_path: Path, sqlite_url: str) -> None:
    spool = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                         str(Path(__file__).parents[2])])}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(spool)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")) if proc.stdout else None)  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not lines or int(lines[-1].split()[0]) < 500):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    reader.join(5)
    proc.stdout.close()
    accepted, elapsed = int(lines[-1].split()[0]), float(lines[-1].split()[1])
    rate = accepted / elapsed  # records per second the child accepted
    store = DecisionLogStore(sqlite_url)
    with SpooledWriter(store, spool, sync_interval_s=0.01) as w:
        deadline = time.monotonic() + 20
        while w.stats().spool_bytes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.flush(20)
    ids = _ids(store)
    assert ids == [f"d{i:06d}" for i in range(len(ids))]  # a prefix: nothing in the middle lost
    # everything accepted up to the last progress line, minus at most ~100 ms of the child's traffic
    assert len(ids) >= accepted - max(5, 0.1 * rate), (len(ids), accepted, rate)
    store.close()


def test_retention_deletes_rows_older_than_the_cutoff_and_ids_are_looked_up(sqlite_url: str) -> None:
    from datetime import timedelta

    from tests.decision_log.helpers import T0

    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(i) for i in range(10)])  # created at T0 + i seconds
        store.write_many([FeedbackRecord(decision_id="d000001", quality=1.0, created_at=T0),
                          FeedbackRecord(decision_id="d000008", quality=1.0, created_at=T0 + timedelta(seconds=8))])
        assert store.decision_exists("d000002") and not store.decision_exists("nope")
        deleted = store.delete_before(T0 + timedelta(seconds=5))
        assert deleted == {"feedback": 1, "outcomes": 0, "decisions": 5}
        assert sorted(_ids(store)) == [f"d{i:06d}" for i in range(5, 10)]
        assert not store.decision_exists("d000002")


class Counting:
    """A sink that counts ``write_many`` calls and the records in each."""

    def __init__(self, store: DecisionLogStore) -> None:
        self.store = store
        self.batches: list[int] = []

    def write_many(self, records: list[LogRecord]) -> int:
        self.batches.append(len(records))
        return self.store.write_many(records)


def test_a_trickle_of_records_is_shipped_in_batches_and_flush_ships_at_once(tmp_path: Path, sqlite_url: str) -> None:
    """Issue 19: one database transaction per record or two cost ~1.3 ms of CPU a record; once caught
    up the ship thread waits ``ship_interval_s`` so that records gather into batches."""
    sink = Counting(DecisionLogStore(sqlite_url))
    with SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, ship_interval_s=0.25) as w:
        for i in range(40):  # ~0.4 s of trickle: records journaled one or two at a time
            assert w.submit(decision(i))
            time.sleep(0.01)
        t0 = time.monotonic()
        assert w.flush(timeout=10)
        flushed_s = time.monotonic() - t0
    assert sum(sink.batches) == 40 and sorted(_ids(sink.store)) == [f"d{i:06d}" for i in range(40)]
    # without the wait every journal batch (1-2 records, 10 ms apart) would be a transaction of its own
    assert len(sink.batches) <= 6, sink.batches
    assert flushed_s < 0.25 + 1.0, flushed_s  # flush does not sit out the ship interval


def test_ship_interval_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ship_interval_s"):
        SpooledWriter(Counting(None), tmp_path / "spool", ship_interval_s=-1)  # type: ignore[arg-type]
