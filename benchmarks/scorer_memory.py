"""Where the answer scorer's training memory goes, per log row, in one process.

    python benchmarks/scorer_memory.py --rows 20000
    python benchmarks/scorer_memory.py --logs LOGS.parquet

Synthetic logs as in ``benchmarks/train_scale.py`` (about ``--rows`` rows), or ``--logs``. Two tables:

1. the per-row objects of the scorer's input, as the fit held them before (one Python string reference
   per row from ``Series.astype(str).tolist()``, which copies each prompt string, the "earlier answers"
   as tuples of (model, answer) strings, the GroupKFold groups as a list of prompt strings) and as it
   holds them now (:class:`llmroute.training.scorer_rows.ScorerRows` codes, earlier answers as row
   indices): bytes per log row still held after the step and at its peak (``tracemalloc``: Python and
   NumPy allocations);
2. :meth:`ResponseScorer.fit` step by step (the steps its progress reports name): the peak of traced
   allocations and of the process's resident memory (sampled every 20 ms) during each step, per log row
   above what the process held before the fit. LightGBM's own allocations (its binned datasets and
   trees) are not traced; the resident memory includes them.

The embedder is ``--embedder`` (default minilm-static) from ``LLMROUTE_HOME`` (built there once).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _step(name: str, n: int, f: Callable[[], Any]) -> Any:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = f()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    print(f"  {name:58s} {(held - before) / n:8.0f} {(peak - before) / n:8.0f} {time.perf_counter() - t0:7.1f}", flush=True)
    return out


def _before(df: Any, n: int) -> None:
    """The per-row strings the fit held before (freed on return)."""
    import pandas as pd

    from llmroute.training.scorer import earlier_contexts

    print("  before (per-row strings):")
    prompts = _step("prompts: astype(str).tolist()", n, lambda: df["prompt"].astype(str).tolist())
    responses = _step("responses: astype(str).tolist()", n, lambda: df["response"].astype(str).tolist())
    models = _step("models: astype(str).tolist()", n, lambda: df["model"].astype(str).tolist())
    cost = {str(m): float(c) for m, c in df["cost_usd"].groupby(df["model"].astype(str)).mean().items()}
    extra = _step("earlier answers: (model, answer) tuples", n, lambda: earlier_contexts(prompts, models, responses, cost, 0))
    idx = [i for i, _ in extra]
    _step("CV groups: factorize(list of prompt strings)", n,
          lambda: pd.factorize(pd.Series([prompts[i] for i in [*range(n), *idx]]))[0])


def per_object(df: Any) -> None:
    from llmroute.training.scorer_rows import ScorerRows, earlier_rows

    n = len(df)
    print(f"\nper-row objects of the scorer's input ({n} rows): bytes per row held after the step, at its peak, seconds")
    _before(df, n)
    gc.collect()
    print("  now (codes into the distinct texts):")
    data = _step("ScorerRows.from_frame (prompt, response, model codes, y, cost)", n,
                 lambda: ScorerRows.from_frame(df, 0.5))
    _step("earlier answers: row indices", n, lambda: earlier_rows(data, data.mean_cost(), np.random.default_rng(0)))


def per_step(df: Any, embedder: Any, cache: Any) -> None:
    from llmroute.training.scorer import ResponseScorer

    n = len(df)
    gc.collect()
    base_rss, base_traced = _rss(), tracemalloc.get_traced_memory()[0]
    steps: list[list[Any]] = []  # [label, start, traced peak, rss peak]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if steps:
                steps[-1][3] = max(steps[-1][3], _rss())
            time.sleep(0.02)

    def report(_fraction: float, label: str) -> None:
        name = "CV folds" if label.startswith("CV fold") else label  # "CV fold 3/5" is part of that step
        if steps and steps[-1][0] == name:
            return
        if steps:
            steps[-1][2] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        steps.append([name, time.perf_counter(), 0, _rss()])

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    scorer = ResponseScorer(embedder).fit(df, cache, report)
    steps[-1][2] = tracemalloc.get_traced_memory()[1]
    stop.set()
    th.join()
    ends = [s[1] for s in steps[1:]] + [time.perf_counter()]
    print(f"\nResponseScorer.fit step by step ({n} rows, {scorer.n_rows_} used, {len(scorer.cv_best_iterations_)} folds, "
          f"{time.perf_counter() - t0:.0f} s): peak above the start, bytes per row")
    print(f"  {'step':34s} {'traced':>8s} {'resident':>9s} {'seconds':>8s}")
    for (label, start, traced, rss), end in zip(steps, ends):
        print(f"  {label:34s} {(traced - base_traced) / n:8.0f} {(rss - base_rss) / n:9.0f} {end - start:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000, help="about this many synthetic rows (train_scale's generator)")
    ap.add_argument("--logs", type=Path, help="use these logs instead")
    ap.add_argument("--embedder", default="minilm-static")
    args = ap.parse_args()

    from llmroute.config import load_settings
    from llmroute.data.importers import read_logs
    from llmroute.router.embedder import EmbeddingCache, load_embedder

    logs = args.logs
    if logs is None:
        from train_scale import generate

        logs = Path(tempfile.mkdtemp(prefix="scorer-memory-")) / "logs.parquet"
        print(f"generated {generate(args.rows, logs)} rows -> {logs}")
    settings = load_settings()
    settings.ensure_home()
    embedder = load_embedder(args.embedder, settings.embedders_dir)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    df = read_logs(logs)
    print(f"{len(df)} rows, {df['prompt_id'].nunique()} prompts, {df['response'].nunique()} distinct answers; "
          f"load average {os.getloadavg()[0]:.1f}")
    tracemalloc.start()
    per_object(df)
    per_step(df, embedder, cache)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
