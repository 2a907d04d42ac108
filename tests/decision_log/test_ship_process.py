"""The decision log's writes from a child process (ProcessSink): the same rows as the ship thread writes,
poison lines set aside, and a child that dies or a database that is down loses nothing."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmroute.data.decision_log import DecisionLogStore, LogRecord, OutcomeRecord, tables
from llmroute.data.decision_log.ship_process import (
    NICE,
    ProcessSink,
    ShipperUnavailable,
    encode_request,
    read_request,
)
from llmroute.data.decision_log.spool import SpooledWriter, encode_record, is_transient, store_lines
from tests.decision_log.helpers import decision


def _rows(store: DecisionLogStore) -> list[LogRecord]:
    return [d for batch in store.iter_decisions() for d in batch]


def test_a_batch_crosses_the_pipe_line_for_line() -> None:
    lines = [b"a\n", b"", b"\xff\x00 binary \r\n", b"x" * 70_000 + b"\n"]
    stream = io.BytesIO(encode_request(lines) + encode_request([]))
    assert read_request(stream) == lines
    assert read_request(stream) == []
    assert read_request(stream) is None  # the end of input


def test_store_lines_writes_records_and_sets_poison_aside(sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    lines: list[bytes | LogRecord] = [encode_record(decision(0)), b"{not json\n", decision(1), encode_record(decision(2))]
    stored, poison = store_lines(store, lines)
    assert stored == 3 and [i for i, _ in poison] == [1] and "undecodable" in poison[0][1]
    assert sorted(d.decision_id for d in _rows(store)) == ["d000000", "d000001", "d000002"]
    store.close()


def _table_rows(store: DecisionLogStore) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (decisions, outcomes, feedback, the dashboard's rollups), sorted."""
    out = {}
    with store.engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            out[table.name] = sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)
    return out


def test_the_process_sink_stores_what_the_ship_thread_stores(tmp_path: Path) -> None:
    by_thread = DecisionLogStore(f"sqlite:///{tmp_path / 'thread.sqlite'}")
    by_process = DecisionLogStore(f"sqlite:///{tmp_path / 'process.sqlite'}")
    sink = ProcessSink(by_process.url)
    records: list[LogRecord] = [decision(i, prompt=f"prompt {i} \x00 \ud800 ünï") for i in range(120)]
    records += [OutcomeRecord(decision_id=f"d{i:06d}", model="small", ok=True, cost_usd=0.001 * i) for i in range(0, 120, 3)]
    try:
        for store, target, name in ((by_thread, by_thread, "t"), (sink, by_process, "p")):
            with SpooledWriter(store, tmp_path / f"spool-{name}", sync_interval_s=0.01) as w:
                for r in records:
                    assert w.submit(r)
                assert w.flush(30)
                st = w.stats()
            assert st.written == len(records) and st.failed == 0 and st.pending == 0
            assert target.counts() == {"decisions": 120, "outcomes": 40, "feedback": 0}
        assert sink.pid is not None and sink.pid != os.getpid()
        assert _rows(by_process) == _rows(by_thread)
        assert _table_rows(by_process) == _table_rows(by_thread)  # rollups included
    finally:
        sink.close()
    assert sink.pid is None
    with pytest.raises(ShipperUnavailable, match="closed"):
        sink.write_lines([encode_record(decision(999))])
    by_thread.close()
    by_process.close()


def test_poison_lines_are_answered_by_index(sqlite_url: str) -> None:
    DecisionLogStore(sqlite_url).close()  # migrated: the child opens the database as it is
    sink = ProcessSink(sqlite_url)
    try:
        stored, poison = sink.write_lines([encode_record(decision(0)), b"garbage\n", encode_record(decision(1))])
        assert stored == 2 and len(poison) == 1 and poison[0][0] == 1 and "undecodable" in poison[0][1]
    finally:
        sink.close()


def test_a_killed_child_loses_nothing_and_is_started_again(tmp_path: Path, sqlite_url: str) -> None:
    store = DecisionLogStore(sqlite_url)
    sink = ProcessSink(sqlite_url)
    with SpooledWriter(sink, tmp_path / "spool", sync_interval_s=0.01, retry_max_s=0.05) as w:
        for i in range(50):
            assert w.submit(decision(i))
        assert w.flush(30)
        first = sink.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for i in range(50, 200):
            assert w.submit(decision(i))
        assert w.flush(30)
        st = w.stats()
    assert st.written == 200 and st.failed == 0 and st.pending == 0
    assert sink.started == 2 and sink.pid not in (None, first)
    assert sorted(d.decision_id for d in _rows(store)) == [f"d{i:06d}" for i in range(200)]
    sink.close()
    store.close()


def test_a_database_that_is_down_is_a_transient_error_and_the_child_survives(tmp_path: Path) -> None:
    sink = ProcessSink("postgresql://llmroute@127.0.0.1:1/nothing")  # nothing listens on port 1
    try:
        with pytest.raises(ShipperUnavailable, match="OperationalError") as err:
            sink.write_lines([encode_record(decision(0))])
        assert is_transient(err.value)  # the spool keeps the lines and retries
        pid = sink.pid
        assert pid is not None
        with pytest.raises(ShipperUnavailable):
            sink.write_lines([encode_record(decision(0))])
        assert sink.pid == pid and sink.started == 1  # the same child: only the database was down
    finally:
        sink.close()


def test_the_child_ignores_ctrl_c_and_ends_with_its_input(sqlite_url: str) -> None:
    DecisionLogStore(sqlite_url).close()
    sink = ProcessSink(sqlite_url)
    assert sink.write_lines([encode_record(decision(0))]) == (1, [])
    pid = sink.pid
    assert pid is not None
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE)
    os.kill(pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert sink.write_lines([encode_record(decision(1))]) == (1, []) and sink.pid == pid
    proc = sink._proc
    assert proc is not None
    sink.close()
    assert proc.returncode == 0  # it ended on its own once its input closed
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar() == 2
    engine.dispose()
