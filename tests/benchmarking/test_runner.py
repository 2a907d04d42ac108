"""Runs against the deterministic fake LLM: scoring, logs, retries, timeouts, resumption, budget, repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.benchmarking.calls import CallPolicy
from llmroute.benchmarking.journal import Journal
from llmroute.benchmarking.runner import RunConfig, run_task, to_logs
from llmroute.benchmarking.scorers import Judge, PythonTests, numeric
from llmroute.benchmarking.summary import summarize
from llmroute.benchmarking.task import Task, TestCase, load_task, make_cases
from llmroute.data.catalog import Catalog
from llmroute.data.importers import read_logs, write_logs
from tests.benchmarking.conftest import FIXTURES, counts
from tests.serving.servers import LiveServer


def policy(server: LiveServer, **kw: float) -> CallPolicy:
    return CallPolicy(default_base_url=f"{server.url}/v1", timeout_s=kw.get("timeout_s", 5.0),
                      retries=int(kw.get("retries", 2)), backoff_s=0.01)


def quiet(**kw: object) -> RunConfig:
    return RunConfig(progress=False, **kw)  # type: ignore[arg-type]


def numbers_task(n: int, name: str = "nums") -> Task:
    cases = make_cases(name, [f"Give the number {i}" for i in range(n)], ["42"] * n)
    return Task(name, cases, None, max_tokens=16)


def test_task_file_run_writes_valid_logs(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    task = load_task(FIXTURES / "arithmetic.yaml")
    report = run_task(task, ["det-good", "det-bad"], test_catalog, Journal(tmp_path / "j.jsonl"),
                      policy=policy(fake), config=quiet())
    assert report.sent == 6 and report.failed == 0 and report.stopped_reason is None
    logs = to_logs(report.records)
    write_logs(logs, tmp_path / "logs.parquet")
    back = read_logs(tmp_path / "logs.parquet")
    assert len(back) == 6 and set(back["task"]) == {"arithmetic"} and set(back["source"]) == {"llmroute-bench"}
    assert back.groupby("model")["quality"].mean().to_dict() == {"det-bad": 0.0, "det-good": 1.0}
    row = back.iloc[0]
    assert row["input_tokens"] == 10 and row["output_tokens"] == 5 and bool(row["cost_is_estimated"])
    assert row["cost_usd"] == pytest.approx((10 * 1000 + 5 * 2000) / 1e6)
    assert back["latency_ms"].notna().all() and back["created_at"].notna().all()
    system_sent = all(k[1].startswith("Give the number") for k in counts(fake))
    assert system_sent and sum(counts(fake).values()) == 6


def test_code_scorer_through_a_run(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    task = load_task(FIXTURES / "code.yaml")
    report = run_task(task, ["det-good", "det-bad"], test_catalog, Journal(tmp_path / "j.jsonl"),
                      PythonTests(timeout_s=10), policy(fake), quiet())
    q = {(r.prompt_id, r.model): r.quality for r in report.records}
    assert q == {("add-1", "det-good"): 1.0, ("add-2", "det-good"): 1.0, ("add-1", "det-bad"): 0.0,
                 ("add-2", "det-bad"): 0.0}


def test_provider_reported_cost(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    report = run_task(numbers_task(1), ["det-priced"], test_catalog, Journal(tmp_path / "j.jsonl"), numeric(),
                      policy(fake), quiet())
    rec = report.records[0]
    assert rec.cost_usd == 0.5 and rec.cost_is_estimated is False and report.spent_usd == 0.5


def test_retries_and_timeouts(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    task = numbers_task(2)
    journal = Journal(tmp_path / "j.jsonl")
    report = run_task(task, ["det-flaky", "det-slow"], test_catalog, journal, numeric(),
                      policy(fake, timeout_s=0.3, retries=1), quiet())
    assert report.failed == 2 and report.sent == 4
    by_model = {r.model: r for r in report.records}
    assert by_model["det-flaky"].status == "scored" and by_model["det-flaky"].quality == 1.0
    assert by_model["det-slow"].status == "failed" and "timed out" in (by_model["det-slow"].error or "")
    c = counts(fake)
    assert all(c[("det-flaky", case.prompt)] == 2 for case in task.cases)  # 500, then retried
    assert all(c[("det-slow", case.prompt)] == 2 for case in task.cases)  # timed out twice (1 retry)
    assert set(to_logs(report.records)["model"]) == {"det-flaky"}  # failures are not logs
    assert summarize(report.records).set_index("model").loc["det-slow", "failed"] == 2
    # a rerun sends the failed calls again, and only those
    again = run_task(task, ["det-flaky", "det-slow"], test_catalog, journal, numeric(),
                     policy(fake, timeout_s=0.3, retries=0), quiet())
    assert again.reused == 2 and again.sent == 2 and again.failed == 2


def test_resumes_after_a_scorer_exception_without_paying_twice(
    fake: LiveServer, test_catalog: Catalog, tmp_path: Path
) -> None:
    task = numbers_task(5)
    journal = Journal(tmp_path / "j.jsonl")
    seen = []
    right = numeric()

    def breaks_on_third(response: str, case: TestCase) -> object:
        seen.append(case.prompt_id)
        if len(seen) == 3:
            raise RuntimeError("scorer bug")
        return right(response, case)

    first = run_task(task, ["det-good", "det-bad"], test_catalog, journal, breaks_on_third, policy(fake),
                     quiet(concurrency=1, repeats=2))
    assert first.stopped_reason is not None and "scorer bug" in first.stopped_reason
    assert first.skipped_stopped > 0
    sent_first = sum(counts(fake).values())
    assert sent_first == first.sent < 20
    second = run_task(task, ["det-good", "det-bad"], test_catalog, journal, numeric(), policy(fake),
                      quiet(concurrency=3, repeats=2))
    assert second.stopped_reason is None and second.rescored == 1
    assert len(second.records) == 20 and all(r.status == "scored" for r in second.records)
    # every (prompt, model, repeat) reached the server exactly once over both runs
    assert sum(counts(fake).values()) == 20
    assert all(n == 2 for n in counts(fake).values())  # two repeats per (model, prompt)
    logs = to_logs(second.records)
    assert len(logs) == 10 and logs.groupby("model")["quality"].mean().to_dict() == {"det-bad": 0.0, "det-good": 1.0}


def test_budget_guard_stops_before_the_budget_then_resumes(
    fake: LiveServer, test_catalog: Catalog, tmp_path: Path
) -> None:
    task = numbers_task(6)
    journal = Journal(tmp_path / "j.jsonl")
    # a call costs at most (prompt tokens + 16 output) at $1000/$2000 per 1M: ~0.04; real usage 0.02
    budget = 0.1
    first = run_task(task, ["det-good"], test_catalog, journal, numeric(), policy(fake),
                     quiet(concurrency=1, budget_usd=budget))
    assert 0 < first.sent < 6 and first.skipped_budget == 6 - first.sent
    assert first.skipped_by_model == {"det-good": first.skipped_budget}
    assert first.spent_usd <= budget
    assert any("budget guard" in line for line in first.lines())
    second = run_task(task, ["det-good"], test_catalog, journal, numeric(), policy(fake), quiet())
    assert second.reused == first.sent and second.sent == 6 - first.sent
    assert sum(counts(fake).values()) == 6 and set(counts(fake).values()) == {1}
    with pytest.raises(ValueError, match="not in the catalog"):
        run_task(task, ["nope"], test_catalog, journal, numeric(), policy(fake), quiet())


def test_repeats_measure_consistency(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    task = numbers_task(3)
    report = run_task(task, ["det-vary", "det-good"], test_catalog, Journal(tmp_path / "j.jsonl"), numeric(),
                      policy(fake), quiet(repeats=4, concurrency=1))
    s = summarize(report.records).set_index("model")
    assert s.loc["det-vary", "agreement"] == 0.5 and s.loc["det-vary", "score_variance"] == 0.25
    assert s.loc["det-good", "agreement"] == 1.0 and s.loc["det-good", "score_variance"] == 0.0
    assert s.loc["det-vary", "accuracy"] == 0.5 and s.loc["det-vary", "calls"] == 12
    logs = to_logs(report.records)
    assert len(logs) == 6 and set(logs[logs["model"] == "det-vary"]["quality"]) == {0.5}


def test_llm_judge(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    task = numbers_task(2)
    report = run_task(task, ["det-good"], test_catalog, Journal(tmp_path / "j.jsonl"),
                      Judge("det-judge", "Is it 42?"), policy(fake), quiet())
    assert [r.quality for r in report.records] == [0.8, 0.8]
    assert report.records[0].reason == "judge det-judge: 8/10"
    judged = [k for k in counts(fake) if k[0] == "det-judge"]
    assert len(judged) == 2 and "Is it 42?" in judged[0][1] and "The answer is 42." in judged[0][1]
    assert report.spent_usd == pytest.approx(4 * (10 * 1000 + 5 * 2000) / 1e6)  # judge calls count too
