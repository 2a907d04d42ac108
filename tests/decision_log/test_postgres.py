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


def test_postgres_stores_nul_and_invalid_unicode_without_failing_the_batch(pg_url: str) -> None:
    """PostgreSQL text and jsonb cannot hold NUL: such characters are replaced (U+FFFD), the prompt's
    hash stays that of the original, and the rest of the batch is stored with it."""
    from llmroute.data.decision_log import FeedbackRecord, OutcomeRecord, prompt_sha256

    nul = "print('a\x00b')  # a NUL"
    records = [decision(i) for i in range(5)] + [
        decision(5, prompt=nul, tenant="t\x00", constraints={"allowed_models": ["m\x00"]}),
        decision(6, prompt="lone \ud800 surrogate"),
        OutcomeRecord(decision_id="d000005", model="small", ok=False, error="x\x00y", attempts=({"error": "\x00"},)),
        FeedbackRecord(decision_id="d000005", quality=0.5, comment="bad\x00comment"),
    ]
    with DecisionLogStore(pg_url) as store:
        store.write_many(records)
        stored = {d.decision_id: d for batch in store.iter_decisions() for d in batch}
        assert len(stored) == 7
        assert stored["d000005"].prompt == "print('a\ufffdb')  # a NUL"
        assert stored["d000005"].prompt_sha256 == prompt_sha256(nul)
        assert stored["d000005"].tenant == "t\ufffd"
        assert stored["d000006"].prompt == "lone \ufffd surrogate"
        assert store.counts() == {"decisions": 7, "outcomes": 1, "feedback": 1}
