"""Benchmark candidate models on your own task and produce benchmark logs in the long schema.

:class:`ModelBenchmarker` is the seed guide's API; :func:`run_task` runs a task file's prompts
against catalog models (concurrent, retried, resumable, within a budget); ``llmroute bench run`` is
its command line. The task file format is described in :mod:`llmroute.benchmarking.task`.
"""

from llmroute.benchmarking.benchmarker import BenchmarkResult, ModelBenchmarker
from llmroute.benchmarking.calls import CallPolicy
from llmroute.benchmarking.journal import CallRecord, Journal
from llmroute.benchmarking.runner import (
    RunConfig,
    RunReport,
    run_task,
    run_task_async,
    to_logs,
)
from llmroute.benchmarking.scorers import (
    Judge,
    PythonTests,
    Score,
    Scorer,
    choice_letter,
    exact_match,
    numeric,
    regex,
)
from llmroute.benchmarking.summary import format_summary, plot_summary, summarize
from llmroute.benchmarking.task import Task, TestCase, load_task

__all__ = [
    "BenchmarkResult", "CallPolicy", "CallRecord", "Journal", "Judge", "ModelBenchmarker", "PythonTests",
    "RunConfig", "RunReport", "Score", "Scorer", "Task", "TestCase", "choice_letter", "exact_match",
    "format_summary", "load_task", "numeric", "plot_summary", "regex", "run_task", "run_task_async",
    "summarize", "to_logs",
]
