"""The same log against a real PostgreSQL server (started by the ``pg_server`` fixture)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from llmroute.data.decision_log import DecisionLogStore, DecisionLogWriter, current_revision
from llmroute.data.decision_log.migrate import HEAD
from tests.decision_log.helpers import T0, decision, feedback, outcome


def test_postgres_round_trip_join_and_export(pg_url: str, tmp_path: Path) -> None:
    with DecisionLogStore(pg_url) as store:
        assert store.dialect == "postgresql" and current_revision(store.engine) == HEAD
        store.write_many([decision(i) for i in range(30)] + [outcome(i) for i in range(10)])
        store.write_many([feedback(1, 0.2, after_s=1), feedback(1, 0.8, after_s=50), decision(3)])  # dup ignored
        assert store.counts() == {"decisions": 30, "outcomes": 10, "feedback": 2}
        rows = [r for b in store.iter_decisions(batch_size=8) for r in b]
        assert rows == [decision(i) for i in range(30)]
        assert rows[0].created_at.utcoffset() == timedelta(0)
        since = [r.decision_id for b in store.iter_decisions(since=T0 + timedelta(seconds=25)) for r in b]
        assert since == [f"d{i:06d}" for i in range(25, 30)]
        df = next(store.joined()).to_pandas().set_index("decision_id")
        assert df.loc["d000001", "quality"] == 0.8 and df.loc["d000001", "outcome_model"] == "small"
        assert store.export_parquet(tmp_path / "pg.parquet", batch_size=7) == 30
    assert pq.read_table(tmp_path / "pg.parquet").num_rows == 30


def test_postgres_workers_migrate_and_write_concurrently(pg_url: str) -> None:
    # stateless workers start together: each opens the store (and migrates) at the same time
    barrier = threading.Barrier(3)

    def open_store() -> DecisionLogStore:
        barrier.wait(10)
        return DecisionLogStore(pg_url)

    with ThreadPoolExecutor(3) as pool:
        stores = list(pool.map(lambda _: open_store(), range(3)))
    try:
        writers = [DecisionLogWriter(s, batch_size=50, flush_interval_s=0.05).start() for s in stores[:2]]

        def produce(w: int) -> None:
            for i in range(w * 1000, w * 1000 + 600):
                writers[w].submit(decision(i))
                writers[w].submit(outcome(i))
                if i % 2 == 0:  # the same feedback sent through both workers: stored once
                    writers[w].submit(feedback(i % 1000, 0.5, feedback_id=f"f{i % 1000}"))

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = [w.close() for w in writers]
        assert all(s.dropped == s.failed == s.pending == 0 for s in stats)
        assert stores[2].counts() == {"decisions": 1200, "outcomes": 1200, "feedback": 300}
        ids = {r.decision_id for b in stores[2].iter_decisions(batch_size=500) for r in b}
        assert len(ids) == 1200
    finally:
        for s in stores:
            s.close()
