"""The batched write path: rows stored exactly as SQLAlchemy's own insert stores them, the rollups equal
to a recomputation from the raw rows however the records are batched (duplicates, retries, feedback
that replaces earlier feedback, text that must be scrubbed), and the quality target kept exact."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionRecord,
    FeedbackRecord,
    LoggedCandidate,
    OutcomeRecord,
    rows as rows_mod,
    tables,
)
from llmroute.data.decision_log.bulk import BulkInsert
from llmroute.data.decision_log.migrate import upgrade_to_head
from llmroute.data.decision_log.rollup import rebuild
from llmroute.data.decision_log.spool import decode_record, encode_record
from llmroute.router.decision import QualityTarget
from tests.decision_log.helpers import T0, decision, outcome

MODELS = ("small", "mid", "large", "m\u00e9dium")


def _records(rng: random.Random, n: int, nasty: bool) -> list:
    """``n`` decisions over a few hours, most with an outcome, some with one or two feedbacks;
    ``nasty``: some text holds NUL characters and lone surrogates (tenant, model, prompt, JSON)."""
    out: list = []
    for i in range(n):
        model = MODELS[i % len(MODELS)]
        tenant = rng.choice(("acme", "beta", None, "t\x00nul" if nasty else "gamma"))
        cands = tuple(LoggedCandidate(m, rng.random(), rng.random() / 100, rng.random() > 0.3,
                                      None if rng.random() > 0.3 else ("max_cost_usd" if not nasty else "bad \ud800"))
                      for m in MODELS)
        prompt = f"prompt {i}" + (" \x00 and \udc80" if nasty and i % 3 == 0 else "")
        out.append(decision(
            i, prompt=prompt, at=T0 + timedelta(minutes=7 * i), tenant=tenant, chosen_model=model, candidates=cands,
            reason_kind=rng.choice(("router", "explored", "constraint", "fallback", "static")),
            best_cost_usd=rng.choice((None, 0.02)), seed_cost_usd=rng.choice((None, 0.004)),
            latency_ms=rng.uniform(0.5, 80), source=rng.choice(("route", "chat")),
            constraints={"max_cost_usd": 0.01, "excluded_models": ["x\x00y" if nasty else "xy"]},
        ))
        if rng.random() < 0.7:
            attempts = tuple({"model": rng.choice(MODELS), "ok": rng.random() > 0.2,
                              "error_kind": rng.choice((None, "timeout"))} for _ in range(rng.randint(1, 3)))
            out.append(outcome(i, model=model, ok=rng.random() > 0.1, cost_usd=rng.random() / 100,
                               latency_ms=rng.uniform(50, 900), attempts=attempts,
                               created_at=T0 + timedelta(minutes=7 * i, seconds=1)))
        for k in range(rng.choice((0, 0, 1, 2))):
            out.append(FeedbackRecord(f"d{i:06d}", round(rng.random(), 3), feedback_id=f"f{i}-{k}",
                                      created_at=T0 + timedelta(minutes=7 * i + 1 + rng.randint(0, 30))))
    return out


def _rollups(store: DecisionLogStore) -> list[tuple]:
    with store.engine.connect() as conn:
        a = [tuple(round(v, 9) if isinstance(v, float) else v for v in row)
             for row in conn.execute(sa.select(tables.rollup).order_by(*tables.rollup.primary_key.columns))]
        b = [tuple(r) for r in conn.execute(
            sa.select(tables.rollup_latency).order_by(*tables.rollup_latency.primary_key.columns))]
    return a + b


def _check_rollups_match_the_rows(store: DecisionLogStore, nasty: bool) -> None:
    rng = random.Random(7)
    recs = _records(rng, 120, nasty)
    # decisions before their outcomes and feedback, in batches of varied size, some repeated (retries)
    i = 0
    while i < len(recs):
        size = rng.choice((1, 3, 17, 40))
        batch = recs[i:i + size]
        store.write_many(batch)
        if rng.random() < 0.3:
            store.write_many(batch)  # a retried batch: nothing counts twice
        i += size
    store.write_many(recs[:25])  # an overlap with what is stored
    incremental = _rollups(store)
    assert incremental, "the rollups are empty"
    rebuild(store, batch_size=16)  # recomputed from the raw rows
    assert _rollups(store) == incremental
    counts = store.counts()
    assert counts["decisions"] == 120
    assert counts["outcomes"] == sum(1 for r in recs if r.__class__.__name__ == "OutcomeRecord")


def test_rollups_equal_a_recomputation_from_the_rows(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        _check_rollups_match_the_rows(store, nasty=True)


def test_rollups_equal_a_recomputation_from_the_rows_on_postgresql(pg_url: str) -> None:
    with DecisionLogStore(pg_url) as store:
        _check_rollups_match_the_rows(store, nasty=True)


def _raw(store: DecisionLogStore, table: sa.Table) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(m) for m in conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()]


def _check_bulk_stores_what_sqlalchemy_stores(url_a: str, url_b: str) -> None:
    """The same records through BulkInsert (the store) and through SQLAlchemy Core's insert give the
    same stored rows, and the same keys come back as inserted."""
    recs = _records(random.Random(3), 40, nasty=True)
    with DecisionLogStore(url_a) as a, DecisionLogStore(url_b) as b:
        a.write_many(recs)
        nul = b.dialect == "postgresql"
        clean = [rows_mod.storable_record(r, nul) for r in recs]
        with b.engine.begin() as conn:
            for table, kind, to_row in ((tables.decisions, DecisionRecord, rows_mod.decision_row),
                                        (tables.outcomes, OutcomeRecord, rows_mod.outcome_row),
                                        (tables.feedback, FeedbackRecord, rows_mod.feedback_row)):
                batch = [to_row(r, b.dialect, nul) for r in clean if isinstance(r, kind)]  # type: ignore[operator]
                conn.execute(sa.insert(table), batch)
        for table in (tables.decisions, tables.outcomes, tables.feedback):
            assert _raw(a, table) == _raw(b, table), table.name
        # the keys returned are those inserted: all new, then none of them again, then only the new ones
        bulk = BulkInsert(a.engine.dialect, tables.decisions, "decision_id")
        new = rows_mod.storable_record(decision(999, prompt="new"), nul)
        with a.engine.begin() as conn:
            again = [bulk.row(rows_mod.decision_row(r, a.dialect, nul)) for r in clean[:5] if isinstance(r, DecisionRecord)]
            assert bulk.insert(conn, again) == set()
            assert bulk.insert(conn, [*again, bulk.row(rows_mod.decision_row(new, a.dialect, nul))]) == {"d000999"}


def test_bulk_insert_stores_what_sqlalchemy_stores(tmp_path) -> None:
    _check_bulk_stores_what_sqlalchemy_stores(f"sqlite:///{tmp_path / 'a.sqlite'}", f"sqlite:///{tmp_path / 'b.sqlite'}")


def test_bulk_insert_stores_what_sqlalchemy_stores_on_postgresql(pg_server: str) -> None:
    import uuid

    import psycopg

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with psycopg.connect(pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres",
                         autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    _check_bulk_stores_what_sqlalchemy_stores(f"{pg_server}/{names[0]}", f"{pg_server}/{names[1]}")


def test_bulk_insert_splits_a_batch_over_statements(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        bulk = BulkInsert(store.engine.dialect, tables.feedback, "feedback_id")
        bulk.rows_per_statement = 7  # a batch larger than one statement may carry
        fb = [FeedbackRecord(f"d{i:06d}", 0.5, feedback_id=f"f{i}", created_at=T0) for i in range(30)]
        with store.engine.begin() as conn:
            assert bulk.insert(conn, [bulk.row(rows_mod.feedback_row(f, "sqlite")) for f in fb]) == {
                f"f{i}" for i in range(30)}
        assert store.counts()["feedback"] == 30


def test_text_is_scrubbed_only_when_it_needs_it() -> None:
    assert set(rows_mod._text_fields(DecisionRecord)) == {
        "decision_id", "prompt_sha256", "router_version", "chosen_model", "prompt", "embedder", "tenant", "user",
        "arm", "target", "rule", "task_hint", "source", "reason_kind", "reason", "target_kind"}
    r = decision(1, prompt="plain ascii \u00e9 text")
    assert rows_mod.storable_record(r, nul=True) is r  # nothing to replace: the same record, no copy
    bad = decision(2, prompt="a\x00b \ud800", tenant="t\x00")
    on_pg, on_sqlite = rows_mod.storable_record(bad, nul=True), rows_mod.storable_record(bad, nul=False)
    assert (on_pg.prompt, on_pg.tenant) == ("a\ufffdb \ufffd", "t\ufffd")
    assert (on_sqlite.prompt, on_sqlite.tenant) == ("a\x00b \ufffd", "t\x00")  # SQLite holds NUL
    assert on_pg.prompt_sha256 == bad.prompt_sha256  # of the original text
    row = rows_mod.decision_row(decision(3, constraints={"k\x00": ["v\x00", 1]},
                                         candidates=(LoggedCandidate("m\x00", 0.5, 0.1, False, "why\ud800"),)),
                                "postgresql", nul=True)
    assert row["constraints"] == {"k\ufffd": ["v\ufffd", 1]}
    assert (row["candidates"][0]["model"], row["candidates"][0]["excluded_by"]) == ("m\ufffd", "why\ufffd")


class _Decision:
    """The attributes of router.decision.Decision that DecisionRecord.from_decision reads."""

    def __init__(self, target: QualityTarget | None) -> None:
        self.model, self.candidates, self.rule, self.knob = "small", (), "threshold", 0.7
        self.router_version, self.target, self.task_hint = "llmroute@3", target, None


@pytest.mark.parametrize("target", [QualityTarget(0.955), QualityTarget(0.12345678901234), QualityTarget(0.8125, "absolute")])
def test_the_quality_target_is_stored_exactly(sqlite_url: str, target: QualityTarget) -> None:
    rec = DecisionRecord.from_decision(_Decision(target), prompt="p", decision_id="exact")
    assert (rec.target_value, rec.target_kind) == (target.value, target.kind)
    assert decode_record(encode_record(rec)) == rec  # through the spool
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([rec])
        [stored] = next(store.iter_decisions())
        assert (stored.target_value, stored.target_kind) == (target.value, target.kind)  # not rounded
        assert stored.target == str(target)  # the text as before
        [batch] = list(store.joined())
        assert batch.to_pylist()[0]["target_value"] == target.value


def test_no_target_and_bad_target_fields() -> None:
    rec = DecisionRecord.from_decision(_Decision(None), prompt="p", decision_id="none")
    assert (rec.target, rec.target_value, rec.target_kind) == (None, None, None)
    with pytest.raises(ValueError, match="target_value and target_kind go together"):
        decision(1, target_value=0.9)
    with pytest.raises(ValueError, match="target_value and target_kind"):
        decision(1, target_value=0.9, target_kind="percent")


def test_rows_from_before_0007_keep_their_text_target(sqlite_url: str) -> None:
    from llmroute.offpolicy.policies import parse_logged_target

    upgrade_to_head(sqlite_url, revision="0004")
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO decisions (decision_id, created_at, prompt_sha256, router_version, candidates, constraints,"
                " chosen_model, propensity, source, target) VALUES ('old', '2026-01-01 00:00:00.000000', :h, 'v1',"
                " '[]', '{}', 'small', 1.0, 'route', '96% of the best model')"), {"h": "0" * 64})
    finally:
        engine.dispose()
    with DecisionLogStore(sqlite_url) as store:  # migrates to 0007
        new = decision(1, target=str(QualityTarget(0.955)), target_value=0.955, target_kind="relative")
        store.write_many([new])
        got = {r.decision_id: r for b in store.iter_decisions() for r in b}
    old = got["old"]
    assert (old.target, old.target_value, old.target_kind) == ("96% of the best model", None, None)
    assert parse_logged_target(old.target) == QualityTarget(0.96)  # parsed from the text, as before
    exact = got["d000001"]
    assert parse_logged_target(exact.target, (exact.target_value, exact.target_kind)) == QualityTarget(0.955)


class _Sink:
    """A store whose writes fail while ``down`` (a stopped database)."""

    def __init__(self, store: DecisionLogStore) -> None:
        self.store, self.down = store, False

    def write_many(self, records: list) -> int:
        if self.down:
            raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        return self.store.write_many(records)


def _spooled(tmp_path, url: str, name: str, recs: list, fresh: bool, outage: bool = False) -> tuple[list[dict], int]:
    """Write ``recs`` through a SpooledWriter (``fresh``: the ship thread may take the journal's records
    in memory); returns the stored decision rows and how often the ship thread read the spool file."""
    import time

    from llmroute.data.decision_log.spool import SpooledWriter

    store = DecisionLogStore(url)
    sink = _Sink(store)
    reads = 0
    with SpooledWriter(sink, tmp_path / name, sync_interval_s=0.01, ship_interval_s=0.02, batch_size=50,
                       retry_max_s=0.05) as w:
        if not fresh:
            w._fresh_max = 0  # every batch is read back from the file
        read = w._read_lines

        def counted(seg):  # type: ignore[no-untyped-def]
            nonlocal reads
            reads += 1
            return read(seg)

        w._read_lines = counted  # type: ignore[method-assign]
        sink.down = outage
        for i, r in enumerate(recs):
            assert w.submit(r)
            if i % 40 == 0:
                time.sleep(0.005)
        if outage:  # more records wait than the journal hands over in memory: the rest come from the file
            time.sleep(0.3)
            sink.down = False
        assert w.flush(20)
        st = w.stats()
    assert (st.written, st.failed, st.dropped) == (len(recs), 0, 0)
    got = _raw(store, tables.decisions)
    store.close()
    return got, reads


def test_the_ship_thread_takes_the_journals_records_and_stores_what_the_file_would(tmp_path) -> None:
    recs = [r for r in _records(random.Random(5), 300, nasty=True) if isinstance(r, DecisionRecord)]
    fresh, fresh_reads = _spooled(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}", "a", recs, fresh=True)
    filed, file_reads = _spooled(tmp_path, f"sqlite:///{tmp_path / 'b.sqlite'}", "b", recs, fresh=False)
    assert fresh == filed and len(fresh) == 300  # the same rows, each once
    assert file_reads >= 6 and fresh_reads <= file_reads // 3, (fresh_reads, file_reads)


def test_records_behind_a_database_outage_come_from_the_file_once_each(tmp_path) -> None:
    recs = [decision(i) for i in range(3000)]  # more than the journal keeps in memory for the ship thread
    got, reads = _spooled(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}", "a", recs, fresh=True, outage=True)
    assert sorted(r["decision_id"] for r in got) == [f"d{i:06d}" for i in range(3000)]
    assert reads > 0
