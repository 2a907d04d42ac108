"""Run a benchmark task against catalog models: concurrent, retried, resumable, within a budget.

Every (prompt, model, repeat) is one call. Calls run concurrently with at most ``concurrency``
in flight per provider (the catalog's ``provider``). Each finished call is appended to the
:class:`~llmroute.benchmarking.journal.Journal` before the next is scheduled, so an interrupted run
resumes where it stopped and never pays twice for the same key. The budget guard reserves each
call's upper-bound cost (counted prompt tokens + ``max_tokens`` at catalog prices) before sending
it and skips calls that would take the spend (real usage so far + reservations) over the budget.
When a scorer raises, no new calls are started, the calls in flight finish and are journaled, and
the run stops with the error in :attr:`RunReport.stopped_reason`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import httpx
import pandas as pd
from tqdm.auto import tqdm

from llmroute.benchmarking.calls import CallPolicy, ModelCaller
from llmroute.benchmarking.journal import CallRecord, Journal, Key
from llmroute.benchmarking.scorers import Judge, Score, Scorer, as_score, build_scorer
from llmroute.benchmarking.task import Task, TestCase
from llmroute.data.catalog import Catalog
from llmroute.data.schema import COLUMNS, DTYPES

DEFAULT_SOURCE = "llmroute-bench"


@dataclass(frozen=True)
class RunConfig:
    """How a run is scheduled."""

    repeats: int = 1
    concurrency: int = 4
    budget_usd: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.concurrency < 1:
            raise ValueError("repeats and concurrency must be at least 1")
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ValueError("budget_usd must be >= 0")


@dataclass(frozen=True)
class RunReport:
    """What a run did. ``records`` holds the latest journal record of every key of the run."""

    task: str
    models: tuple[str, ...]
    records: tuple[CallRecord, ...]
    planned: int
    sent: int = 0
    reused: int = 0
    rescored: int = 0
    failed: int = 0
    skipped_budget: int = 0
    skipped_stopped: int = 0
    spent_usd: float = 0.0
    stopped_reason: str | None = None
    skipped_by_model: dict[str, int] = field(default_factory=dict)

    def scored(self) -> int:
        """Calls of the run with a scored answer (what the logs will hold)."""
        return sum(r.status == "scored" for r in self.records)

    def failure_reasons(self) -> Counter[tuple[str, str]]:
        """How many calls failed, per (model, error), among the run's records."""
        return Counter((r.model, r.error or "unknown error") for r in self.records if r.status != "scored")

    def lines(self) -> list[str]:
        done = sum(r.status == "scored" for r in self.records)
        out = [
            (f"task {self.task}: {done}/{self.planned} calls scored "
             f"({self.sent} sent now, {self.reused} reused from the journal, {self.rescored} rescored)"),
            f"spent this run: ${self.spent_usd:.6f} (catalog prices x real token usage unless the provider reported a cost)",
        ]
        if self.failed:
            out.append(f"failed after retries: {self.failed} (not in the logs; a rerun sends them again)")
            for (model, error), n in self.failure_reasons().most_common(10):
                out.append(f"  {n} x {model}: {error}")
        if self.skipped_budget:
            per = ", ".join(f"{m}: {n}" for m, n in sorted(self.skipped_by_model.items()))
            out.append(f"skipped by the budget guard: {self.skipped_budget} ({per})")
        if self.skipped_stopped:
            out.append(f"not started after the run stopped: {self.skipped_stopped}")
        if self.stopped_reason:
            out.append(f"stopped: {self.stopped_reason}")
        return out


def resolve_models(models: Sequence[str], catalog: Catalog) -> tuple[str, ...]:
    """Canonical catalog names; ValueError naming the unknown ones."""
    unknown = [m for m in models if m not in catalog]
    if unknown:
        raise ValueError(f"models not in the catalog ({catalog.source}): {', '.join(unknown)}")
    return tuple(dict.fromkeys(catalog.canonical_name(m) for m in models))


async def score_answer(scorer: Scorer, response: str, case: TestCase) -> Score:
    """Run a scorer: coroutine functions on the loop, plain callables in a worker thread."""
    if inspect.iscoroutinefunction(scorer) or inspect.iscoroutinefunction(type(scorer).__call__):
        result = await scorer(response, case)  # type: ignore[misc]  # a coroutine function, checked above
    else:
        result = await asyncio.to_thread(scorer, response, case)
        if inspect.isawaitable(result):
            result = await result
    return as_score(result)


async def run_task_async(
    task: Task,
    models: Sequence[str],
    catalog: Catalog,
    journal: Journal,
    scorer: Scorer | None = None,
    policy: CallPolicy | None = None,
    config: RunConfig | None = None,
    http: httpx.AsyncClient | None = None,
) -> RunReport:
    """Benchmark ``models`` on ``task`` (see the module docstring). ``scorer`` defaults to the task's."""
    config = config or RunConfig()
    names = resolve_models(models, catalog)
    if scorer is None:
        if task.scorer is None:
            raise ValueError(f"task {task.name}: no scorer given and none in the task file")
        scorer = build_scorer(task.scorer)
    owns_http = http is None
    client = http or httpx.AsyncClient()
    caller = ModelCaller(client, catalog, policy or CallPolicy())
    if isinstance(scorer, Judge) and scorer.caller is None:
        scorer = Judge(catalog.canonical_name(scorer.model), scorer.rubric, caller, scorer.max_tokens)
    if config.budget_usd is not None:
        priced = list(names) + ([scorer.model] if isinstance(scorer, Judge) else [])
        unpriced = [m for m in priced if catalog.estimate_cost(m, 1, 1) is None]
        if unpriced:
            raise ValueError(f"a budget needs catalog prices; unknown for: {', '.join(unpriced)}")
    try:
        return await _Run(task, names, catalog, journal, scorer, caller, config).go()
    finally:
        if owns_http:
            await client.aclose()


def run_task(
    task: Task, models: Sequence[str], catalog: Catalog, journal: Journal, scorer: Scorer | None = None,
    policy: CallPolicy | None = None, config: RunConfig | None = None,
) -> RunReport:
    """:func:`run_task_async` from synchronous code. Ctrl-C returns what the journal holds."""
    try:
        return asyncio.run(run_task_async(task, models, catalog, journal, scorer, policy, config))
    except KeyboardInterrupt:
        names = resolve_models(models, catalog)
        reps = (config or RunConfig()).repeats
        done = journal.load()
        keys = [(c.prompt_id, m, r) for c in task.cases for m in names for r in range(reps)]
        recs = tuple(done[k] for k in keys if k in done)
        return RunReport(task.name, names, recs, len(keys), stopped_reason="interrupted (Ctrl-C)")


class _Run:
    def __init__(self, task: Task, models: tuple[str, ...], catalog: Catalog, journal: Journal,
                 scorer: Scorer, caller: ModelCaller, config: RunConfig) -> None:
        self.task, self.models, self.catalog, self.journal = task, models, catalog, journal
        self.scorer, self.caller, self.config = scorer, caller, config
        self.sems = {p: asyncio.Semaphore(config.concurrency) for p in {catalog[m].provider for m in models}}
        self.stop = asyncio.Event()
        self.stopped_reason: str | None = None
        self.reserved = 0.0
        self.counts: Counter[str] = Counter()
        self.skipped_by_model: Counter[str] = Counter()
        self.latest: dict[Key, CallRecord] = {}

    async def go(self) -> RunReport:
        previous = self.journal.load()
        jobs = [(c, m, r) for c in self.task.cases for m in self.models for r in range(self.config.repeats)]
        todo = []
        for case, model, rep in jobs:
            prev = previous.get((case.prompt_id, model, rep))
            if prev is not None and prev.prompt == case.prompt and prev.status == "scored":
                self.latest[prev.key] = prev
                self.counts["reused"] += 1
            else:
                todo.append((case, model, rep, prev if prev is not None and prev.prompt == case.prompt else None))
        spent0 = self.caller.spent_usd
        with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=self.task.name, unit="call",
                  disable=not self.config.progress) as bar:
            async def one(case: TestCase, model: str, rep: int, prev: CallRecord | None) -> None:
                await self._job(case, model, rep, prev)
                bar.update(1)

            await asyncio.gather(*(one(*t) for t in todo))
        c = self.counts
        return RunReport(
            self.task.name, self.models, tuple(self.latest[k] for k in
                                                ((cs.prompt_id, m, r) for cs, m, r in jobs) if k in self.latest),
            len(jobs), c["sent"], c["reused"], c["rescored"], c["failed"], c["skipped_budget"], c["skipped_stopped"],
            self.caller.spent_usd - spent0, self.stopped_reason, dict(self.skipped_by_model),
        )

    async def _job(self, case: TestCase, model: str, rep: int, prev: CallRecord | None) -> None:
        if prev is not None and prev.status == "unscored" and prev.response is not None:
            self.counts["rescored"] += 1
            await self._score_and_record(prev, case)
            return
        async with self.sems[self.catalog[model].provider]:
            if self.stop.is_set():
                self.counts["skipped_stopped"] += 1
                return
            messages = self.task.messages(case)
            estimate = 0.0
            if self.config.budget_usd is not None:
                estimate = self.caller.estimate_cost(model, messages, self.task.max_tokens) or 0.0
                if self.caller.spent_usd + self.reserved + estimate > self.config.budget_usd:
                    self.counts["skipped_budget"] += 1
                    self.skipped_by_model[model] += 1
                    return
            self.reserved += estimate
            created = datetime.now(UTC).isoformat()
            try:
                self.counts["sent"] += 1
                ans = await self.caller.complete(model, messages, self.task.max_tokens, self.task.temperature)
            finally:
                self.reserved -= estimate
        base = CallRecord(
            self.task.name, case.prompt_id, model, rep, case.prompt, "failed", ans.response, None, None,
            ans.cost_usd, ans.cost_is_estimated, ans.input_tokens, ans.output_tokens, ans.latency_ms, created,
            ans.error,
        )
        if not ans.ok:
            self.counts["failed"] += 1
            self._record(base)
            return
        await self._score_and_record(replace(base, status="unscored"), case)

    async def _score_and_record(self, rec: CallRecord, case: TestCase) -> None:
        assert rec.response is not None
        try:
            s = await score_answer(self.scorer, rec.response, case)
        except Exception as exc:  # noqa: BLE001 - a scorer bug must not lose the paid-for answer
            self._record(replace(rec, status="unscored", error=f"scorer failed: {type(exc).__name__}: {exc}"))
            if not self.stop.is_set():
                self.stopped_reason = f"scorer failed on {rec.prompt_id} / {rec.model}: {type(exc).__name__}: {exc}"
                self.stop.set()
            return
        self._record(replace(rec, status="scored", quality=s.value, reason=s.reason, error=None))

    def _record(self, rec: CallRecord) -> None:
        self.journal.append(rec)
        self.latest[rec.key] = rec


def to_logs(records: Sequence[CallRecord], source: str = DEFAULT_SOURCE) -> pd.DataFrame:
    """Scored records as benchmark logs in the long schema: one row per (prompt, model).

    Repeats are averaged (quality, cost, tokens, latency); the response is the first repeat's.
    """
    rows = [r for r in records if r.status == "scored"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})
    raw = pd.DataFrame([r.__dict__ for r in rows]).sort_values(["prompt_id", "model", "repeat"])
    g = raw.groupby(["prompt_id", "model"], sort=False)
    df = g.agg(
        prompt=("prompt", "first"), quality=("quality", "mean"), cost_usd=("cost_usd", "mean"),
        cost_is_estimated=("cost_is_estimated", "any"), input_tokens=("input_tokens", "mean"),
        output_tokens=("output_tokens", "mean"), latency_ms=("latency_ms", "mean"), task=("task", "first"),
        response=("response", "first"), created_at=("created_at", "min"),
    ).reset_index()
    df["source"] = source
    df["input_tokens"] = df["input_tokens"].round()
    df["output_tokens"] = df["output_tokens"].round()
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    df["cost_is_estimated"] = df["cost_is_estimated"].astype(bool)
    return df[list(COLUMNS)].astype(DTYPES)
