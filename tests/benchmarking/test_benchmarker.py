"""The seed's ModelBenchmarker API: benchmark_task and get_best_model_for_task."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.benchmarking.benchmarker import ModelBenchmarker
from llmroute.benchmarking.calls import CallPolicy
from llmroute.benchmarking.runner import RunConfig
from llmroute.benchmarking.task import TestCase
from llmroute.data.catalog import Catalog
from tests.benchmarking.conftest import counts
from tests.serving.servers import LiveServer


def test_benchmark_task_with_a_scorer(fake: LiveServer, test_catalog: Catalog, tmp_path: Path) -> None:
    bench = ModelBenchmarker(["det-good", "det-bad", "det-priced"], test_catalog,
                             CallPolicy(default_base_url=f"{fake.url}/v1"), RunConfig(progress=False),
                             journal_dir=tmp_path)
    result = bench.benchmark_task("capitals", scorer="exact", test_data=["Capital of France?", "Capital city of France?"],
                                  ground_truth=["Paris", "paris"])
    assert len(result.logs) == 6 and (tmp_path / "capitals.journal.jsonl").exists()
    assert bench.get_best_model_for_task("capitals") == "det-good"  # tie with det-priced, cheaper
    assert bench.get_best_model_for_task("capitals", metric="cost") == "det-good"
    assert bench.get_best_model_for_task("capitals", metric="tokens") in {"det-good", "det-bad", "det-priced"}
    with pytest.raises(ValueError, match="unknown metric"):
        bench.get_best_model_for_task("capitals", metric="vibes")
    with pytest.raises(KeyError, match="not been benchmarked"):
        bench.get_best_model_for_task("other")
    n = sum(counts(fake).values())
    bench.benchmark_task("capitals", scorer={"regex": {"pattern": "paris"}},
                         test_data=[{"prompt": "Capital of France?"}, {"prompt": "Capital city of France?"}])
    assert sum(counts(fake).values()) == n  # same keys: answered from the journal


def test_benchmark_task_with_the_seeds_task_func() -> None:
    calls = []

    def evaluate_task(model_name: str, test_case: TestCase) -> float:
        calls.append((model_name, test_case.prompt))
        return 1.0 if model_name == "big" and test_case.reference == "4" else 0.0

    bench = ModelBenchmarker(["small", "big"])
    result = bench.benchmark_task("summarization", task_func=evaluate_task, test_data=["2+2?", "3+3?"],
                                  ground_truth=["4", "6"])
    assert len(calls) == 4 and len(result.logs) == 4
    assert bench.get_best_model_for_task("summarization", metric="accuracy") == "big"
    assert result.summary.set_index("model").loc["big", "accuracy"] == 0.5
