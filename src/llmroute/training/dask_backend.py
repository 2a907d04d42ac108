"""Training on a Dask cluster: ``llmroute train --dask local:N`` or ``--dask tcp://scheduler:8786``.

What runs where:

- **workers** read the Parquet logs partition by partition (``dask.dataframe``), validate each
  partition, and turn it into a *prompt table*: each distinct prompt once with its focus-text
  embedding (embedder loaded once per worker; embedding cache on the worker's disk), text features and
  token count (counted once per prompt), plus the numeric (prompt, model, quality, cost) outcomes.
  Answer texts never leave the workers: each partition's answer scorer rows stay on its worker
  (:mod:`llmroute.training.dask_scorer` builds the scorer's features and fits it there);
- the **client** joins the prompt tables into the prompt-by-model matrices (prompt-level arrays:
  about 1 KiB per distinct prompt for the 256-d embedding, plus the prompt text once) and builds the
  quality model's design matrix (~150 bytes per (prompt, model) row);
- **workers** compute the out-of-fold neighbour statistics in query chunks, each fold's reference
  index broadcast to them once; they fit the cross-validation fold boosters (one task per fold, the
  same early stopping as in one process); and the final booster is fitted data-parallel with
  :mod:`lightgbm.dask` on the design matrix split over the workers.

The router saved at the end is the same artifact as a single-process training (LightGBM text models,
JSON, NumPy), registered the same way.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from llmroute.data.tokens import count_tokens_array
from llmroute.data.validate import validate_logs
from llmroute.data.wide import WideLogs, to_wide
from llmroute.router.neighbours import NeighbourIndex, NeighbourStats
from llmroute.router.quality_model import FoldFit, fit_fold
from llmroute.training.dask_params import sklearn_params
from llmroute.training.dask_scatter import broadcast
from llmroute.training.worker_embedder import worker_embedder

if TYPE_CHECKING:
    from llmroute.training.dask_scorer import AnswerPart

LOCAL_PREFIX = "local:"
LOG_COLUMNS = ("prompt_id", "prompt", "model", "quality", "cost_usd", "cost_is_estimated", "input_tokens", "task")
WORKER_MEMORY_LIMIT = "4GiB"  # per LocalCluster worker; Dask spills, then pauses, then restarts a worker above it
PROMPT_OVERRIDE = "_prompt_override"  # a partition's outcomes: the row's prompt text where it is not its id's first


class DaskSpecError(ValueError):
    """A ``--dask`` value that is neither ``local:N`` nor a scheduler address."""


@dataclass(frozen=True)
class DaskSpec:
    """Where to train: a LocalCluster of ``workers`` processes, or the scheduler at ``address``."""

    workers: int | None = None
    address: str | None = None

    @classmethod
    def parse(cls, text: str) -> DaskSpec:
        """``local:N`` (N >= 1 worker processes on this machine) or ``tcp://host:port`` (also
        ``tls://``, ``ucx://``, ``inproc://``): a running Dask scheduler."""
        t = text.strip()
        if t.startswith(LOCAL_PREFIX):
            n = t[len(LOCAL_PREFIX):]
            if not n.isdigit() or int(n) < 1:
                raise DaskSpecError(f"--dask {text!r}: expected local:N with N >= 1 worker processes, e.g. local:2")
            return cls(workers=int(n))
        if "://" in t and t.split("://", 1)[1]:
            return cls(address=t)
        raise DaskSpecError(
            f"--dask {text!r}: expected local:N (a LocalCluster of N worker processes) or a scheduler address "
            "such as tcp://scheduler:8786"
        )


@contextmanager
def dask_client(spec: DaskSpec, echo: Any = print) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``; a LocalCluster is started (one thread and
    :data:`WORKER_MEMORY_LIMIT` per worker, ``OMP_WAIT_POLICY=PASSIVE``) and shut down on exit."""
    from distributed import Client, LocalCluster

    if spec.address is not None:
        client = Client(spec.address, timeout="30s")
        try:
            echo(f"dask: connected to {spec.address} ({len(client.scheduler_info()['workers'])} workers)")
            yield client
        finally:
            client.close()
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the worker processes
    with warnings.catch_warnings():
        # a timing remark (scratch folders slow to create), common on a busy machine; not a failure
        warnings.filterwarnings("ignore", message=r"Creating scratch directories is taking a surprisingly long time")
        cluster = LocalCluster(
            n_workers=spec.workers, threads_per_worker=1, processes=True, memory_limit=WORKER_MEMORY_LIMIT,
            dashboard_address=":0", host="127.0.0.1",  # any free port: several clusters may share a machine
        )
    client = Client(cluster)
    try:
        echo(f"dask: LocalCluster of {spec.workers} worker processes ({WORKER_MEMORY_LIMIT} each) at {cluster.scheduler_address}")
        yield client
    finally:
        client.close()
        cluster.close()


# ---- reading and embedding on the workers -------------------------------------------------------


@dataclass(frozen=True)
class PromptTable:
    """One partition's distinct prompts (first-seen order) with their features, and its outcomes."""

    prompt_ids: np.ndarray  # (p,) object
    prompts: np.ndarray  # (p,) object
    tasks: np.ndarray  # (p,) object, None = unlabelled
    input_tokens: np.ndarray  # (p,) float
    embeddings: np.ndarray  # (p, d) float32
    features: np.ndarray  # (p, f) float32
    outcomes: pd.DataFrame  # prompt_id, model, quality, cost_usd, cost_is_estimated (+ output_tokens, latency_ms, response when logged)


def prompt_table(part: pd.DataFrame, label: str, embedder_spec: str, embedders_dir: str, cache_path: str,
                 answers_threshold: float | None = None) -> tuple[PromptTable, AnswerPart | None]:
    """Validate one partition (errors name ``label``, the partition's rows counted from 1) and reduce it
    to a :class:`PromptTable` (runs on a worker). ``answers_threshold``: also the partition's answer
    scorer rows (:class:`~llmroute.training.dask_scorer.AnswerPart`, labelled ``quality >= threshold``),
    which stay on the worker, with the logged answers embedded into the cache here."""
    from llmroute.router.answer_scorer import answer_text
    from llmroute.router.embedder import EmbeddingCache
    from llmroute.router.features import embed_and_featurize
    from llmroute.training.dask_scorer import answer_part

    df = validate_logs(part, label)
    first = df.drop_duplicates("prompt_id")
    prompts = first["prompt"].astype(str).to_numpy(dtype=object)
    tokens = pd.to_numeric(first["input_tokens"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(tokens).any():
        missing = np.isnan(tokens)
        tokens[missing] = count_tokens_array(list(prompts[missing])).astype(float)
    embedder = worker_embedder(embedder_spec, embedders_dir)
    cache = EmbeddingCache(Path(cache_path))
    emb, feats = embed_and_featurize(list(prompts), tokens, embedder, cache)
    tasks = np.array([None if pd.isna(t) else str(t) for t in first["task"]], dtype=object)
    # the numeric per-call columns training uses (the cost model's answer lengths, learned latencies)
    extra = [c for c in ("output_tokens", "latency_ms") if c in df.columns]
    answers = None
    if answers_threshold is not None and "response" in df.columns:
        answers = answer_part(df, answers_threshold)
        texts = [answer_text(r) for r in answers.rows.responses]
        cache.encode(embedder, list(dict.fromkeys(texts)), progress=False)  # the scorer then reads them cached
    outcomes = df[["prompt_id", "model", "quality", "cost_usd", "cost_is_estimated", *extra]].copy()
    # a row whose prompt text differs from its id's first text keeps its own (as reading the file in
    # one process does); the others share the first's string when joined
    own = df["prompt"].astype(str).to_numpy(dtype=object)
    default = pd.Series(prompts, index=first["prompt_id"].to_numpy()).loc[df["prompt_id"].to_numpy()].to_numpy()
    outcomes[PROMPT_OVERRIDE] = np.where(own != default, own, None)
    return PromptTable(
        first["prompt_id"].astype(str).to_numpy(dtype=object), prompts, tasks, tokens,
        np.asarray(emb, dtype=np.float32), feats, outcomes,
    ), answers


@dataclass(frozen=True)
class DaskEmbedded:
    """The prompt-by-model view of the logs with each prompt's embedding and text features."""

    logs: WideLogs
    embeddings: np.ndarray
    features: np.ndarray
    calls: pd.DataFrame  # one row per logged call: prompt, prompt_id, model, quality, cost_usd (+ output_tokens, latency_ms)
    answers: list[Any] = field(default_factory=list)  # per partition, a future of its AnswerPart (on a worker)


def embed_on_dask(client: Any, path: Path, embedder_spec: str, embedders_dir: Path, cache_path: Path,
                  echo: Any = print, with_answers: bool = False, threshold: float = 0.5) -> DaskEmbedded:
    """Read ``path`` as a ``dask.dataframe``, embed every partition's distinct prompts on the workers
    and join the prompt tables here. ``with_answers``: each partition's answer scorer rows (labelled
    ``quality >= threshold``) stay on its worker, their answers embedded there into the cache at
    ``cache_path`` (:attr:`DaskEmbedded.answers`; the calls joined here carry no answer text). The same prompts, order, matrices and embeddings as reading the
    file in one process (:func:`llmroute.data.wide.to_wide` plus
    :func:`llmroute.router.features.embed_and_featurize`). Duplicate (prompt_id, model) pairs across
    partitions are an error naming both partitions."""
    import dask.dataframe as dd
    from distributed import as_completed

    from llmroute.data.schema import LogValidationError

    try:
        ddf = dd.read_parquet(str(path))
    except (OSError, ValueError) as exc:
        raise LogValidationError(str(path), None, None, f"cannot read: {exc}") from exc
    parts = ddf.to_delayed()
    t0 = time.perf_counter()
    echo(f"dask: embedding {len(parts)} partitions of {path} on the workers")
    from llmroute.training.dask_scorer import getitem

    futures = {}
    answers = []
    for i, part in enumerate(parts):
        both = client.submit(
            prompt_table, client.compute(part), f"{path} (partition {i + 1} of {len(parts)})",
            embedder_spec, str(embedders_dir), str(cache_path), threshold if with_answers else None, pure=False,
        )
        futures[client.submit(getitem, both, 0, pure=False)] = i
        answers.append(client.submit(getitem, both, 1, pure=False))
    tables: list[PromptTable | None] = [None] * len(parts)
    for done, fut in enumerate(as_completed(list(futures)), 1):
        tables[futures[fut]] = fut.result()
        fut.release()
        if done == len(parts) or time.perf_counter() - t0 > 5 and done % max(1, len(parts) // 10) == 0:
            echo(f"dask: {done}/{len(parts)} partitions embedded ({time.perf_counter() - t0:.0f} s)")
    joined = _join(tables, path)  # type: ignore[arg-type]
    has = client.gather([client.submit(_is_none, a, pure=False) for a in answers])
    return replace(joined, answers=[] if all(has) else answers)


def _is_none(obj: Any) -> bool:
    return obj is None


def _join(tables: list[PromptTable], path: Path) -> DaskEmbedded:
    from llmroute.data.schema import LogValidationError

    outcomes = pd.concat([t.outcomes.assign(_part=i + 1) for i, t in enumerate(tables)], ignore_index=True)
    dup = outcomes.duplicated(["prompt_id", "model"], keep=False)
    if dup.any():
        rows = outcomes[dup].sort_values(["prompt_id", "model"]).head(2)
        pid, model = rows.iloc[0]["prompt_id"], rows.iloc[0]["model"]
        raise LogValidationError(
            str(path), None, "prompt_id, model",
            f"duplicate (prompt_id, model) = ({pid!r}, {model!r}) in partitions {', '.join(map(str, rows['_part']))}",
        )
    # each row's prompt text: its partition's first text of the id, or its own where that differs
    row_prompt = np.concatenate([
        t.prompts[pd.Series(np.arange(len(t.prompt_ids)), index=t.prompt_ids).loc[t.outcomes["prompt_id"].astype(str)]
                  .to_numpy()] for t in tables
    ]) if len(outcomes) else np.array([], dtype=object)
    if PROMPT_OVERRIDE in outcomes.columns:
        override = outcomes[PROMPT_OVERRIDE].to_numpy(dtype=object)
        mask = pd.notna(override)
        row_prompt[mask] = override[mask]
        outcomes = outcomes.drop(columns=PROMPT_OVERRIDE)
    ids = np.concatenate([t.prompt_ids for t in tables])
    _, first = np.unique(ids, return_index=True)
    first = np.sort(first)  # first occurrence, in file order
    cat = lambda name: np.concatenate([getattr(t, name) for t in tables])  # noqa: E731
    tasks, tokens = cat("tasks")[first], cat("input_tokens")[first]
    emb, feats = np.vstack([t.embeddings for t in tables])[first], np.vstack([t.features for t in tables])[first]
    # to_wide on the outcomes with each prompt's fields: the same pivot as in one process
    pos = pd.Series(np.arange(len(first)), index=ids[first])
    at = pos.loc[outcomes["prompt_id"].astype(str)].to_numpy()
    # object columns hold references to each prompt's one string, not copies
    long = outcomes.drop(columns="_part").assign(prompt=row_prompt, input_tokens=tokens[at], task=tasks[at])
    logs = to_wide(long)
    order = pos.loc[list(logs.prompt_ids)].to_numpy()
    return DaskEmbedded(logs, emb[order], feats[order], long)


# ---- the quality model's steps on the workers ---------------------------------------------------


def _stats_chunk(index: NeighbourIndex, query: np.ndarray) -> NeighbourStats:
    return index.stats(query)


def _fit_fold_task(params: dict[str, Any], X: np.ndarray, y: np.ndarray, in_train: np.ndarray, cats: list[int],
                   max_rounds: int, early_stopping_rounds: int, threads: int) -> FoldFit:
    return fit_fold({**params, "num_threads": threads}, X, y, in_train, cats, max_rounds, early_stopping_rounds)


class DaskBackend:
    """:class:`~llmroute.router.quality_model.FitBackend` on a Dask cluster (see module docstring)."""

    def __init__(self, client: Any, echo: Any = print) -> None:
        self.client = client
        self.echo = echo

    def _threads(self) -> int:
        info = self.client.scheduler_info()["workers"]
        return max(1, min(int(w.get("nthreads", 1)) for w in info.values())) if info else 1

    def neighbour_stats(self, emb: np.ndarray, success: np.ndarray,
                        folds: list[tuple[np.ndarray, np.ndarray]]) -> NeighbourStats:
        n, m = success.shape
        parts = {k: np.zeros((n, m)) for k in ("y1", "k10w", "k20", "k100")}
        s1 = np.zeros(n)
        workers = max(1, len(self.client.scheduler_info()["workers"]))
        for f, (tr, va) in enumerate(folds):
            index = broadcast(self.client, NeighbourIndex(np.ascontiguousarray(emb[tr]), success[tr]))
            step = max(256, -(-len(va) // (2 * workers)))
            chunks = [va[i : i + step] for i in range(0, len(va), step)]
            futs = [self.client.submit(_stats_chunk, index, emb[c], pure=False) for c in chunks]
            for c, st in zip(chunks, self.client.gather(futs)):
                s1[c] = st.s1
                for k in parts:
                    parts[k][c] = getattr(st, k)
            self.client.cancel(index)
            self.echo(f"dask: neighbour statistics, fold {f + 1}/{len(folds)} ({len(chunks)} chunks)")
        return NeighbourStats(s1=s1, **parts)

    def fit_folds(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, in_train: list[np.ndarray],
                  cats: list[int], max_rounds: int, early_stopping_rounds: int,
                  on_fold: Callable[[int], None] | None = None) -> list[FoldFit]:
        from distributed import as_completed

        t0 = time.perf_counter()
        Xf, yf = broadcast(self.client, [X, y])
        futs = [
            self.client.submit(_fit_fold_task, params, Xf, yf, mask, cats, max_rounds, early_stopping_rounds,
                               self._threads(), pure=False)
            for mask in in_train
        ]
        for done, _ in enumerate(as_completed(futs), start=1):
            if on_fold is not None:
                on_fold(done)
        fits = self.client.gather(futs)
        self.client.cancel([Xf, yf])
        self.echo(f"dask: {len(fits)} cross-validation boosters in {time.perf_counter() - t0:.0f} s "
                  f"(best iterations {[f.best_iteration for f in fits]})")
        return fits

    def fit_final(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, cats: list[int], rounds: int) -> lgb.Booster:
        import dask.array as da
        from lightgbm.dask import DaskLGBMClassifier

        t0 = time.perf_counter()
        workers = max(1, len(self.client.scheduler_info()["workers"]))
        rows = max(1, -(-len(X) // workers))
        dX, dy = da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y.astype(np.int32), chunks=rows)
        dX, dy = self.client.persist([dX, dy])
        # lightgbm.dask gives each worker's LightGBM the worker's thread count
        est = DaskLGBMClassifier(client=self.client, n_estimators=rounds, **sklearn_params(params))
        with warnings.catch_warnings():
            # the estimator always passes n_jobs, which lightgbm.dask replaces by the workers' threads and warns
            warnings.filterwarnings("ignore", message=r"Parameter (n_jobs|num_threads) will be ignored")
            est.fit(dX, dy, categorical_feature=cats)
        self.echo(f"dask: final booster ({rounds} rounds, lightgbm.dask on {workers} workers) in "
                  f"{time.perf_counter() - t0:.0f} s")
        return est.booster_
