"""Decisions of a saved router with its LightGBM models predicted through LightGBM's C library
(:class:`llmroute.router.native_booster.NativeBooster`, how a router loads) against the same model files
loaded by the ``lightgbm`` package, on every distinct prompt of a log, one prompt at a time and batched;
and the answer scorer's probabilities on the log's answers.

    python benchmarks/route_parity.py --router ~/.llmroute/routers/<version> --logs data/routerbench/test.parquet

Prints how many decisions (the chosen model, every candidate's numbers, the reason) and scores differ;
exits 1 when any does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--logs", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "routerbench" / "test.parquet")
    ap.add_argument("--home", type=Path, default=None, help="llmroute home (embedders; default: $LLMROUTE_HOME or ~/.llmroute).")
    args = ap.parse_args()
    import lightgbm as lgb

    from llmroute.artifacts.loading import load_served
    from llmroute.config import Settings
    from llmroute.data.importers import read_logs
    from llmroute.router.decision import RouteQuery

    settings = Settings(home=args.home) if args.home else Settings()
    t0 = time.perf_counter()
    router, scorer = load_served(args.router, settings, True)
    package_quality = type(router.quality).load(args.router)
    package_quality.boosters_ = [lgb.Booster(model_file=str(args.router / f"quality_lightgbm_{i}.txt"))
                                 for i in range(len(router.quality.boosters_))]
    package = dataclasses.replace(router, quality=package_quality)
    logs = read_logs(args.logs)
    prompts = logs["prompt"].drop_duplicates().tolist()
    queries = [RouteQuery(p) for p in prompts]
    ours = [router.route(p) for p in prompts]
    theirs = [package.route(p) for p in prompts]
    single = sum(a != b for a, b in zip(ours, theirs))
    batched = sum(a != b for a, b in zip(router.route_many(queries), package.route_many(queries)))
    models = {d.model for d in ours}
    print(f"{len(prompts)} prompts of {args.logs}: {single} decisions differ one at a time, {batched} batched "
          f"({len(models)} different models chosen); load {os.getloadavg()[0]:.2f}")
    differ = single + batched
    if scorer is not None:
        rows = logs.dropna(subset=["response"])
        trio = (rows["prompt"].tolist(), rows["response"].tolist(), rows["model"].tolist())
        got = scorer.score(*trio)
        scorer.booster_ = lgb.Booster(model_file=str(args.router / "scorer" / "scorer_lightgbm.txt"))
        want = scorer.score(*trio)
        n = int((got != want).sum())
        print(f"answer scorer: {n} of {len(got)} scores differ (max |diff| "
              f"{float(np.max(np.abs(got - want))) if len(got) else 0.0:.3g})")
        differ += n
    print(f"done in {time.perf_counter() - t0:.1f} s")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
