"""The dashboard's rollups: written with the rows, exact sums, idempotent, rebuilt identically, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from llmroute.data.decision_log import DecisionLogStore, FeedbackRecord, LoggedCandidate, tables
from llmroute.data.decision_log.overview import read_overview
from llmroute.data.decision_log.rollup import (
    LATENCY_GROWTH,
    UNKNOWN,
    latency_slot,
    percentile_from_histogram,
    rebuild,
)
from tests.decision_log.helpers import decision, outcome

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CANDS = (
    LoggedCandidate("small", 0.7, 0.001, True),
    LoggedCandidate("mid", 0.8, 0.004, True),
    LoggedCandidate("large", 0.9, 0.02, True),
)


def _seed(store: DecisionLogStore) -> None:
    """12 decisions in the last day (acme: 8, beta: 4), one 3 days old (acme), with outcomes and feedback."""
    recs: list = []
    for i in range(12):
        tenant = "acme" if i < 8 else "beta"
        model = ("small", "mid", "large")[i % 3]
        kind = {5: "explored", 6: "constraint", 7: "fallback", 8: "static"}.get(i, "router")
        recs.append(decision(i, at=NOW - timedelta(minutes=30 + 60 * i), tenant=tenant, chosen_model=model,
                             candidates=CANDS, reason_kind=kind, best_cost_usd=0.02, seed_cost_usd=0.004,
                             latency_ms=2.0 + i, source="route" if i % 2 == 0 else "chat"))
    recs.append(decision(99, at=NOW - timedelta(days=3), tenant="acme", chosen_model="large", candidates=CANDS,
                         reason_kind="router", best_cost_usd=0.02, seed_cost_usd=0.004, latency_ms=50.0))
    for i in (1, 3, 5, 7, 9, 11):  # the chat decisions have outcomes
        attempts = ({"model": "small", "ok": False, "error_kind": "timeout"}, {"model": "mid", "ok": True}) if i == 3 \
            else ({"model": "x", "ok": True},)
        recs.append(outcome(i, model="mid" if i == 3 else ("small", "mid", "large")[i % 3], ok=i != 11,
                            cost_usd=0.01 * (i + 1), latency_ms=100.0 * (i + 1), attempts=attempts,
                            created_at=NOW - timedelta(minutes=29 + 60 * i)))
    recs += [FeedbackRecord(f"d{i:06d}", q, created_at=NOW - timedelta(minutes=20), feedback_id=f"f{i}")
             for i, q in ((0, 1.0), (1, 0.0), (2, 0.75), (8, 0.25))]
    store.write_many(recs)


def _check_day(store: DecisionLogStore) -> None:
    o = read_overview(store.engine, "day", now=NOW)
    t = o.totals
    assert t["decisions"] == 12
    assert (t["explored"], t["constrained"], t["fallback"], t["static"]) == (1, 1, 1, 1)
    assert t["expected_cost_usd"] == pytest.approx(4 * (0.001 + 0.004 + 0.02))
    assert t["best_n"] == t["seed_n"] == 12
    assert t["best_saving_usd"] == pytest.approx(12 * 0.02 - 4 * (0.001 + 0.004 + 0.02))
    assert t["seed_saving_usd"] == pytest.approx(12 * 0.004 - 4 * (0.001 + 0.004 + 0.02))
    assert t["calls"] == 6 and t["calls_failed"] == 1 and t["escalations"] == 1
    assert t["attempts"] == 7 and t["attempt_errors"] == 1 and t["attempt_timeouts"] == 1
    assert t["cost_usd"] == pytest.approx(0.01 * (2 + 4 + 6 + 8 + 10 + 12))
    assert t["feedback"] == 4 and t["quality_sum"] == pytest.approx(2.0) and t["met"] == 2
    assert o.by_tenant["acme"]["decisions"] == 8 and o.by_tenant["beta"]["decisions"] == 4
    assert o.tenants == ("acme", "beta")
    # the decisions' series add up to the totals, bucket by bucket
    assert sum(sum(s["decisions"]) for s in o.series.values()) == 12
    assert sum(sum(s["cost_usd"]) for s in o.series.values()) == pytest.approx(t["cost_usd"])
    assert o.latency["route"]["n"] == 6 and o.latency["call"]["n"] == 5  # the failed call has no latency
    assert [r.decision_id for r in o.recent][:2] == ["d000000", "d000001"]


def test_rollup_sums_match_the_rows(tmp_path) -> None:
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        _seed(store)
        _check_day(store)
        month = read_overview(store.engine, "30d", now=NOW)
        assert month.totals["decisions"] == 13
        acme = read_overview(store.engine, "day", tenant="acme", now=NOW)
        assert acme.totals["decisions"] == 8 and acme.tenants == ("acme", "beta")
        assert {r.tenant for r in acme.recent} == {"acme"}
        hour = read_overview(store.engine, "hour", now=NOW)
        assert hour.totals["decisions"] == 1 and len(hour.buckets) == 13


def test_rewritten_records_are_not_counted_twice(tmp_path) -> None:
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        _seed(store)
        _seed(store)  # a retried batch: every key already stored
        _check_day(store)


def test_latest_feedback_replaces_the_earlier_one(tmp_path) -> None:
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        _seed(store)
        store.write_many([FeedbackRecord("d000001", 0.9, created_at=NOW - timedelta(minutes=5), feedback_id="f1b")])
        store.write_many([FeedbackRecord("d000001", 0.1, created_at=NOW - timedelta(minutes=50), feedback_id="f1c")])
        t = read_overview(store.engine, "day", now=NOW).totals
        assert t["feedback"] == 4  # still one per decision
        assert t["quality_sum"] == pytest.approx(2.0 - 0.0 + 0.9)  # d1's 0.0 replaced by the later 0.9; 0.1 is older
        assert t["met"] == 3


def test_records_without_their_decision_count_as_unknown(tmp_path) -> None:
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        store.write_many([outcome(500, created_at=NOW - timedelta(minutes=3), cost_usd=0.5),
                          FeedbackRecord("d000500", 0.8, created_at=NOW - timedelta(minutes=2))])
        o = read_overview(store.engine, "hour", now=NOW)
        assert o.tenants == (UNKNOWN,)
        assert o.by_tenant[UNKNOWN]["cost_usd"] == pytest.approx(0.5)
        assert o.by_tenant[UNKNOWN]["feedback"] == 1


def _rollup_rows(store: DecisionLogStore) -> list[tuple]:
    with store.engine.connect() as conn:
        a = [tuple(round(v, 9) if isinstance(v, float) else v for v in row)
             for row in conn.execute(sa.select(tables.rollup).order_by(*tables.rollup.primary_key.columns))]
        b = list(conn.execute(sa.select(tables.rollup_latency).order_by(*tables.rollup_latency.primary_key.columns)))
    return a + [tuple(r) for r in b]


def test_rebuild_gives_the_incremental_rollup(tmp_path) -> None:
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        _seed(store)
        before = _rollup_rows(store)
        seen: list[int] = []
        assert rebuild(store, batch_size=5, progress=seen.append) == 13
        assert seen == [5, 10, 13]
        assert _rollup_rows(store) == before


def test_latency_histogram_percentiles_are_within_nine_percent() -> None:
    values = [1.0 + 0.37 * i for i in range(1000)]
    counts: dict[int, int] = {}
    for v in values:
        counts[latency_slot(v)] = counts.get(latency_slot(v), 0) + 1
    for q in (0.5, 0.99):
        exact = sorted(values)[int(q * len(values)) - 1]
        got = percentile_from_histogram(counts, q)
        assert got is not None and abs(got / exact - 1) <= LATENCY_GROWTH ** 0.5 - 1
    assert percentile_from_histogram({}, 0.5) is None


def test_unknown_window_is_refused(tmp_path) -> None:
    with (
        DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store,
        pytest.raises(ValueError, match="unknown window 'week': expected one of hour, day, 30d"),
    ):
        read_overview(store.engine, "week")


def test_rollups_on_postgresql(pg_url: str) -> None:
    with DecisionLogStore(pg_url) as store:
        _seed(store)
        _seed(store)
        _check_day(store)
        before = _rollup_rows(store)
        rebuild(store)
        assert _rollup_rows(store) == before


def test_cli_rebuild_fills_the_rollups_of_an_older_log(tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from llmroute.cli.logs import register

    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with DecisionLogStore(url) as store:
        _seed(store)
        expected = _rollup_rows(store)
        with store.engine.begin() as conn:  # as if the rows were logged before revision 0006
            conn.execute(sa.delete(tables.rollup))
            conn.execute(sa.delete(tables.rollup_latency))
        assert read_overview(store.engine, "day", now=NOW).totals["decisions"] == 0
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["logs", "rollup", "--db", url, "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "rolled up 13 decisions" in result.output and "12/13 decisions" in result.output
    with DecisionLogStore(url) as store:
        assert _rollup_rows(store) == expected
        _check_day(store)
    missing = CliRunner().invoke(app, ["logs", "rollup", "--db", f"sqlite:///{tmp_path / 'nope.sqlite'}"])
    assert missing.exit_code == 2 and "no decision log at" in missing.output
