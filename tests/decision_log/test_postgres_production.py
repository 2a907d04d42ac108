"""Retraining and off-policy evaluation read a PostgreSQL decision log by its URL, like a SQLite one."""

from __future__ import annotations

from datetime import timedelta

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.opening import open_decision_log
from llmroute.offpolicy.logged import logged_traffic
from llmroute.training.retrain import read_production_rows
from tests.decision_log.helpers import T0, decision, feedback, outcome


def test_production_rows_and_logged_traffic_from_postgres(pg_url: str) -> None:
    with DecisionLogStore(pg_url) as store:  # the service migrates; readers never do
        store.write_many([decision(i) for i in range(20)] + [outcome(i) for i in range(15)]
                         + [feedback(i, 0.1 * (i % 10)) for i in range(12)])
    store = open_decision_log(pg_url)
    try:
        rows = read_production_rows(store, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=18))
        traffic = logged_traffic(store.joined(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=18)))
    finally:
        store.close()
    c = rows.counts()
    assert c["decisions_read"] == 16 and c["decisions_after_until_not_read"] == 2
    assert c["rows_used"] == 10  # decisions 2..11 have outcome and feedback
    assert c["skipped"] == {"no feedback (quality unknown)": 6}  # 12..17; the first reason counts
    assert len(traffic) == 10 and traffic.read == 16 and traffic.skipped == c["skipped"]
    assert list(traffic.quality) == [0.1 * (i % 10) for i in range(2, 12)]
    assert set(traffic.propensity) == {0.9}
