"""The seed guide's ``ModelBenchmarker``: benchmark models on your task, then pick the best one.

>>> bench = ModelBenchmarker(["gpt-4-1106-preview", "gpt-3.5-turbo-1106"])        # doctest: +SKIP
>>> bench.benchmark_task("arith", scorer="numeric", test_data=["6 x 7?"], ground_truth=["42"])  # +SKIP
>>> bench.get_best_model_for_task("arith", metric="cost")                          # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmroute.benchmarking.calls import CallPolicy
from llmroute.benchmarking.journal import CallRecord, Journal
from llmroute.benchmarking.runner import (
    DEFAULT_SOURCE,
    RunConfig,
    RunReport,
    run_task,
    to_logs,
)
from llmroute.benchmarking.scorers import Scorer, as_score, build_scorer
from llmroute.benchmarking.summary import summarize
from llmroute.benchmarking.task import (
    ScorerSpec,
    Task,
    TestCase,
    make_cases,
    parse_scorer,
)
from llmroute.data.catalog import Catalog, load_catalog

# metric -> (summary column, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("accuracy", True),
    "quality": ("accuracy", True),
    "cost": ("cost_usd_per_call", False),
    "latency": ("latency_ms_mean", False),
    "tokens": ("output_tokens_mean", False),
    "consistency": ("agreement", True),
    "variance": ("score_variance", False),
}


@dataclass(frozen=True)
class BenchmarkResult:
    """A benchmarked task: the run report, the logs (long schema) and the per-model summary."""

    report: RunReport
    logs: pd.DataFrame
    summary: pd.DataFrame


class ModelBenchmarker:
    """Benchmark catalog models on tasks; keeps each task's result in :attr:`results_`.

    ``journal_dir`` holds one resumable journal per task (``<task>.journal.jsonl``); without it a
    temporary folder is used and nothing is resumed across benchmarkers.
    """

    def __init__(
        self, models: Sequence[str], catalog: Catalog | None = None, policy: CallPolicy | None = None,
        config: RunConfig | None = None, journal_dir: str | Path | None = None, source: str = DEFAULT_SOURCE,
    ) -> None:
        self.models = tuple(models)
        self.catalog = catalog
        self.policy = policy
        self.config = config
        self.journal_dir = journal_dir
        self.source = source
        self.results_: dict[str, BenchmarkResult] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def benchmark_task(
        self,
        task_name: str,
        task_func: Callable[[str, TestCase], Any] | None = None,
        test_data: Sequence[str | Mapping[str, Any]] = (),
        ground_truth: Sequence[Any] | None = None,
        scorer: Scorer | str | ScorerSpec | Mapping[str, Any] | None = None,
        *,
        system_prompt: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
    ) -> BenchmarkResult:
        """Benchmark every model on ``test_data`` (prompts, or mappings with prompt/reference/id).

        With ``task_func(model_name, test_case) -> score`` (the seed's form) you make the calls
        yourself and only latency and quality are recorded. Otherwise each model is called through
        its catalog endpoint and ``scorer`` (a callable, or a built-in name such as ``"numeric"`` or
        ``{"numeric": {"tolerance": 0.5}}``) scores the answer against ``ground_truth``.
        """
        task = Task(task_name, _cases(task_name, test_data, ground_truth), None, system_prompt, max_tokens,
                    temperature)
        if task_func is not None:
            records = self._run_func(task, task_func)
            report = RunReport(task_name, self.models, tuple(records), len(records), reused=0)
        else:
            if scorer is None:
                raise ValueError("give task_func or scorer")
            fn = _scorer(scorer)
            report = run_task(task, self.models, self._catalog(), Journal(self._journal_path(task_name)), fn,
                              self.policy, self.config)
        result = BenchmarkResult(report, to_logs(report.records, self.source), summarize(report.records))
        self.results_[task_name] = result
        return result

    def get_best_model_for_task(self, task_name: str, metric: str = "accuracy") -> str:
        """The best model on ``metric``: accuracy/quality, cost, latency, tokens, consistency, variance.

        Ties go to higher accuracy, then lower cost per call.
        """
        if task_name not in self.results_:
            raise KeyError(f"task {task_name!r} has not been benchmarked (known: {sorted(self.results_)})")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        col, higher = METRICS[metric]
        s = self.results_[task_name].summary.dropna(subset=[col])
        if s.empty:
            raise ValueError(f"task {task_name!r}: no model has a value for {col}")
        ranked = s.assign(_key=s[col] * (-1 if higher else 1), _acc=-s["accuracy"], _cost=s["cost_usd_per_call"])
        return str(ranked.sort_values(["_key", "_acc", "_cost"], na_position="last").iloc[0]["model"])

    def _catalog(self) -> Catalog:
        if self.catalog is None:
            self.catalog = load_catalog()
        return self.catalog

    def _journal_path(self, task_name: str) -> Path:
        if self.journal_dir is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="llmroute-bench-")
            base = Path(self._tmp.name)
        else:
            base = Path(self.journal_dir)
        return base / f"{task_name}.journal.jsonl"

    def _run_func(self, task: Task, func: Callable[[str, TestCase], Any]) -> list[CallRecord]:
        out = []
        repeats = self.config.repeats if self.config else 1
        for case in task.cases:
            for model in self.models:
                for rep in range(repeats):
                    created = datetime.now(UTC).isoformat()
                    t0 = time.perf_counter()
                    s = as_score(func(model, case))
                    ms = (time.perf_counter() - t0) * 1000.0
                    out.append(CallRecord(task.name, case.prompt_id, model, rep, case.prompt, "scored", None,
                                          s.value, s.reason, latency_ms=ms, created_at=created))
        return out


def _cases(task_name: str, data: Sequence[str | Mapping[str, Any]], truth: Sequence[Any] | None) -> tuple[TestCase, ...]:
    prompts: list[str] = []
    refs: list[Any] = []
    ids: list[str | None] = []
    for item in data:
        if isinstance(item, str):
            prompts.append(item)
            refs.append(None)
            ids.append(None)
        else:
            prompts.append(str(item["prompt"]))
            refs.append(item.get("reference", item.get("ground_truth")))
            ids.append(item.get("id"))
    if truth is not None:
        if len(truth) != len(prompts):
            raise ValueError(f"{len(prompts)} test cases but {len(truth)} ground-truth answers")
        refs = list(truth)
    return make_cases(task_name, prompts, refs, ids)


def _scorer(s: Scorer | str | ScorerSpec | Mapping[str, Any]) -> Scorer:
    if isinstance(s, ScorerSpec):
        return build_scorer(s)
    if isinstance(s, (str, Mapping)):
        spec = parse_scorer(s if isinstance(s, str) else dict(s), "<scorer>")
        assert spec is not None
        return build_scorer(spec)
    return s
