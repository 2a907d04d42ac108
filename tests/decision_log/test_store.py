"""SQLite round trips: records, joins, redaction, paging, idempotent writes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionLogWriter,
    DecisionRecord,
    FeedbackRecord,
    LoggedCandidate,
    prompt_sha256,
)
from tests.decision_log.helpers import T0, decision, feedback, outcome


def test_round_trip(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        d = decision(1)
        store.write_many([d, outcome(1)])
        [[got]] = list(store.iter_decisions())
        assert got.decision_id == d.decision_id
        assert got.created_at == d.created_at and got.created_at.tzinfo is not None
        assert got.prompt == d.prompt and got.prompt_sha256 == d.prompt_sha256
        assert got.embedding == d.embedding
        assert got.candidates == d.candidates
        assert dict(got.constraints) == {"max_cost_usd": 0.01, "excluded_models": []}
        assert (got.tenant, got.user, got.arm, got.source) == ("acme", "u1", "treatment", "route")
        assert (got.router_version, got.chosen_model, got.propensity) == ("llmroute@3", "small", 0.9)
        assert (got.target, got.rule, got.knob, got.task_hint) == (d.target, "threshold", 0.7, "mbpp")
        o = store.outcomes_for([d.decision_id])[d.decision_id]
        assert o == outcome(1)


def test_sqlite_is_in_wal_mode(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(1)])
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_writes_are_idempotent(sqlite_url: str) -> None:
    fb = feedback(1, 0.5)
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(1), outcome(1), fb])
        store.write_many([decision(1), outcome(1), fb])  # a retried batch
        assert store.counts() == {"decisions": 1, "outcomes": 1, "feedback": 1}


def test_feedback_joins_to_its_decision_latest_wins(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(1), decision(2), decision(3), outcome(1), outcome(2)])
        # feedback arrives later, out of order, twice for decision 1
        store.write_many([feedback(1, 0.9, after_s=60, comment="second look"), feedback(1, 0.2, after_s=5),
                          feedback(3, 1.0)])
        [batch] = list(store.joined())
        df = batch.to_pandas().set_index("decision_id")
        assert df.loc["d000001", "quality"] == 0.9 and df.loc["d000001", "feedback_comment"] == "second look"
        assert df.loc["d000002", "outcome_model"] == "small" and df["quality"].isna()["d000002"]
        assert df.loc["d000003", "quality"] == 1.0 and df["outcome_model"].isna()["d000003"]
        assert df.loc["d000001", "cost_usd"] == pytest.approx(0.0007)
        assert list(df.loc["d000001", "embedding"]) == [0.25, -0.5, 1.0]


def test_redaction_keeps_only_hash_and_embedding(sqlite_url: str) -> None:
    secret = "my password is hunter2"
    with DecisionLogStore(sqlite_url) as store, DecisionLogWriter(store, redact=True) as writer:
        writer.submit(decision(1, prompt=secret))
        writer.close()
        [[got]] = list(store.iter_decisions())
        assert got.prompt is None
        assert got.prompt_sha256 == prompt_sha256(secret)
        assert got.embedding == (0.25, -0.5, 1.0)
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # file, WAL, shm
    assert b"hunter2" not in raw


@dataclass(frozen=True)
class _FakeDecision:
    model: str = "small"
    candidates: tuple[object, ...] = ()
    rule: str = "threshold"
    knob: float = 0.5
    router_version: str = "r@1"
    target: str | None = "quality 0.800"
    task_hint: str | None = None


@dataclass(frozen=True)
class _Constraints:
    max_cost_usd: float | None = 0.02
    excluded_models: tuple[str, ...] = ("x",)


def test_from_decision_reads_a_router_decision() -> None:
    from llmroute.router.decision import Candidate, Constraints, Decision, QualityTarget

    dec = Decision(model="small", candidates=(Candidate("small", 0.8, 0.001, True),
                                              Candidate("large", 0.9, 0.05, False, "max_cost_usd")),
                   reason="cheapest that clears", cleared=True, rule="threshold", knob=0.7,
                   router_version="llmroute@3", target=QualityTarget(0.95))
    rec = DecisionRecord.from_decision(dec, prompt="hi", constraints=Constraints(max_cost_usd=0.01),
                                       embedding=[0.1, 0.2], redact=True, propensity=0.8, arm="b")
    assert rec.prompt is None and rec.prompt_sha256 == prompt_sha256("hi")
    assert rec.candidates[1] == LoggedCandidate("large", 0.9, 0.05, False, "max_cost_usd")
    assert rec.constraints["max_cost_usd"] == 0.01 and rec.chosen_model == "small"
    assert (rec.router_version, rec.rule, rec.knob) == ("llmroute@3", "threshold", 0.7)
    assert rec.target == "95% of the best model"  # the target's text: the log's column
    assert (rec.propensity, rec.arm) == (0.8, "b")
    # any object with the same attributes works (data/ does not import router/)
    other = DecisionRecord.from_decision(_FakeDecision(), prompt="x", constraints=_Constraints())
    assert other.constraints == {"max_cost_usd": 0.02, "excluded_models": ("x",)}


def test_records_validate() -> None:
    with pytest.raises(ValueError, match="propensity"):
        decision(1, propensity=0.0)
    with pytest.raises(ValueError, match="quality"):
        FeedbackRecord("d1", 1.5)


def test_iter_decisions_pages_in_time_order_and_since_filters(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        # several decisions share one timestamp: paging must neither skip nor repeat them
        recs = [decision(i, at=T0 + timedelta(seconds=i // 4)) for i in range(50)]
        store.write_many(reversed(recs))
        batches = list(store.iter_decisions(batch_size=7))
        assert [len(b) for b in batches] == [7] * 7 + [1]
        assert [r.decision_id for b in batches for r in b] == [r.decision_id for r in recs]
        since = T0 + timedelta(seconds=10)
        got = [r.decision_id for b in store.iter_decisions(since=since, batch_size=3) for r in b]
        assert got == [r.decision_id for r in recs if r.created_at >= since]


def test_store_files_are_plain_sqlite(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(1)])
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        assert conn.execute("select count(*) from decisions").fetchone() == (1,)
    finally:
        conn.close()


def test_a_long_prompt_is_logged_as_its_head_and_tail_with_the_whole_prompts_hash() -> None:
    """Issue 13 item 7: logging a 999 KB prompt per request (JSON, fsync, SQLite) slowed every other
    request; the record keeps what routing reads of it, and the hash of all of it."""
    from llmroute.data.decision_log.records import logged_prompt
    from llmroute.router.decision import Decision
    from llmroute.router.text import SCAN_CHARS, focus_text

    exemplars = "".join(f"Question {i}?\nAnswer: {i % 4}\n\n" for i in range(4000))  # ~80 KB of solved exemplars
    body = "The quick brown fox jumps over the lazy dog. " * 22_300
    for prompt in (body[:999_000], exemplars + "Which letter comes after B?", "Which planet?\n\n" + body + "\n\nWhy?"):
        kept = logged_prompt(prompt)
        assert 32_000 < len(kept) <= 32_005 and kept.startswith(prompt[:16_000]) and kept.endswith(prompt[-16_000:])
        assert focus_text(kept) == focus_text(prompt)  # routing reads the same text of both
        assert logged_prompt(kept) == kept
    assert SCAN_CHARS // 2 <= 16_000  # the kept head and tail cover all focus_text searches
    short = "Write a python function that reverses a list"
    assert logged_prompt(short) == short and logged_prompt("x" * 32_000) == "x" * 32_000

    decision = Decision(model="small", candidates=(), reason="r", cleared=True, rule="threshold", knob=0.5,
                        router_version="v1")
    rec = DecisionRecord.from_decision(decision, prompt=body[:999_000], decision_id="d1")
    assert rec.prompt == logged_prompt(body[:999_000]) and rec.prompt_sha256 == prompt_sha256(body[:999_000])
