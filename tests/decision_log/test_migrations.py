"""Schema migrations: an old log (revision 0001) upgrades to head without losing rows."""

from __future__ import annotations

import sqlalchemy as sa

from llmroute.data.decision_log import DecisionLogStore, current_revision, upgrade_to_head
from llmroute.data.decision_log.migrate import HEAD, create_log_engine


def _old_rows(n: int) -> list[dict[str, object]]:
    return [
        {"decision_id": f"old{i}", "created_at": f"2025-06-01 12:00:{i:02d}.000000", "prompt": f"p{i}",
         "prompt_sha256": "0" * 64, "router_version": "llmroute@1", "candidates": "[]",
         "constraints": "{}", "chosen_model": "small", "propensity": 1.0}
        for i in range(n)
    ]


def test_upgrade_from_0001_keeps_rows(sqlite_url: str) -> None:
    upgrade_to_head(sqlite_url, revision="0001")
    assert current_revision(sqlite_url) == "0001"
    engine = create_log_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            cols = {c["name"] for c in sa.inspect(conn).get_columns("decisions")}
            assert "source" not in cols
            conn.execute(sa.text(
                "INSERT INTO decisions (decision_id, created_at, prompt, prompt_sha256, router_version, candidates,"
                " constraints, chosen_model, propensity) VALUES (:decision_id, :created_at, :prompt, :prompt_sha256,"
                " :router_version, :candidates, :constraints, :chosen_model, :propensity)"), _old_rows(40))
            conn.execute(sa.text("INSERT INTO feedback VALUES ('f1', 'old3', 0.75, NULL, '2025-06-02 00:00:00')"))
    finally:
        engine.dispose()

    with DecisionLogStore(sqlite_url) as store:  # opening migrates to head
        assert current_revision(store.engine) == HEAD == "0007"
        assert store.counts() == {"decisions": 40, "outcomes": 0, "feedback": 1}
        old = [r for b in store.iter_decisions(batch_size=16) for r in b]
        assert [r.decision_id for r in old] == [f"old{i}" for i in range(40)]
        assert {r.source for r in old} == {"unknown"} and old[3].prompt == "p3"
        assert {r.reason for r in old} == {None}  # 0005: rows from before keep no reason
        assert {(r.target_value, r.target_kind) for r in old} == {(None, None)}  # 0007: nor an exact target
        with store.engine.connect() as conn:
            assert "ix_decisions_created_at" in {i["name"] for i in sa.inspect(conn).get_indexes("decisions")}
        q = {b.to_pandas().set_index("decision_id")["quality"].get("old3") for b in store.joined()}
        assert 0.75 in q


def test_upgrade_is_idempotent(sqlite_url: str) -> None:
    upgrade_to_head(sqlite_url)
    upgrade_to_head(sqlite_url)
    assert current_revision(sqlite_url) == HEAD
