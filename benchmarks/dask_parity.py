"""Does training on Dask give the same router? Trains on the bundled RouterBench training split twice,
in one process and with ``--dask local:N``, evaluates both on the held-out split and prints their AIQ,
the out-of-fold numbers training printed, and how often their test decisions agree.

    python benchmarks/dask_parity.py                    # local:2, a fresh LLMROUTE_HOME under /tmp
    python benchmarks/dask_parity.py --workers 3 --partitions 8

The Dask run reads the logs rewritten with ``--partitions`` row groups, so that every worker gets
partitions. Same data, same seed; the fold models are the same computation, the final booster is
data-parallel (lightgbm.dask), so the two routers can differ slightly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--partitions", type=int, default=4, help="Parquet row groups for the Dask run")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples in the evaluation")
    ap.add_argument("--embedder", default="minilm-static")
    args = ap.parse_args()

    import pandas as pd

    home = Path(os.environ.get("LLMROUTE_HOME") or tempfile.mkdtemp(prefix="llmroute-parity-"))
    env = {**os.environ, "LLMROUTE_HOME": str(home), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    exe = [sys.executable, "-m", "llmroute.cli"]
    train, test = ROOT / "data/routerbench/train.parquet", ROOT / "data/routerbench/test.parquet"
    df = pd.read_parquet(train)
    parted = home / "train_partitioned.parquet"
    home.mkdir(parents=True, exist_ok=True)
    df.to_parquet(parted, row_group_size=-(-len(df) // args.partitions), index=False)

    results = {}
    for name, logs, extra in (
        ("single process", train, []),
        (f"dask local:{args.workers}", parted, ["--dask", f"local:{args.workers}"]),
    ):
        folder = home / name.replace(" ", "_").replace(":", "")
        secs, out = run(exe + ["train", "--logs", str(logs), "--no-track", "--out", str(folder),
                               "--embedder", args.embedder, *extra], env)
        oof = [line for line in out.splitlines() if line.startswith(("quality model:", "validation", "response scorer"))]
        report_dir = folder / "report"
        run(exe + ["evaluate", "--model", str(folder), "--logs", str(test), "--report-dir", str(report_dir),
                   "--train-logs", str(train), "--bootstrap", str(args.bootstrap)], env)
        report = json.loads((report_dir / "report.json").read_text())
        results[name] = (folder, report)
        others = "".join(f", {k} {report['routers'][k]['aiq']:.4f}" for k in ("cascade", "fixed_chain")
                         if k in report["routers"])
        print(f"{name}: train {secs:.1f} s; test AIQ learned {report['routers']['learned']['aiq']:.4f}{others}")
        for line in oof:
            print(f"    {line}")

    (a_name, (a_dir, a)), (b_name, (b_dir, b)) = results.items()
    diff = b["routers"]["learned"]["aiq"] - a["routers"]["learned"]["aiq"]
    print(f"AIQ difference ({b_name} - {a_name}): {diff:+.4f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    files = [{str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "report" not in p.relative_to(d).parts}
             for d in (a_dir, b_dir)]
    scorer = sorted(f for f in files[0] if f.startswith("scorer/"))
    print(f"artifact files: {'the same' if files[0] == files[1] else 'DIFFERENT'} ({len(files[0])} files, "
          f"answer scorer: {len(scorer)} files{', with cascade operating points' if any('operating' in f for f in scorer) else ''})"
          + ("" if files[0] == files[1] else f"; only in {a_name}: {sorted(files[0] - files[1])}, only in {b_name}: "
             f"{sorted(files[1] - files[0])}"))
    agree = _agreement(a_dir, b_dir, test)
    print(f"test prompts routed to the same model at the default target: {agree:.1%}")


def _agreement(a_dir: Path, b_dir: Path, test: Path) -> float:
    import numpy as np

    from llmroute.config import load_settings
    from llmroute.data.importers import read_logs
    from llmroute.data.wide import to_wide
    from llmroute.router.embedder import load_embedder
    from llmroute.router.router import Router, read_router_meta

    settings = load_settings()
    embedder = load_embedder(read_router_meta(a_dir)["embedder"]["spec"], settings.embedders_dir)
    ra, rb = Router.load(a_dir, embedder), Router.load(b_dir, embedder)
    prompts = list(to_wide(read_logs(test)).prompts)
    pa, pb = [r.decide_all(*_queries(r, prompts)) for r in (ra, rb)]
    return float(np.mean([getattr(x, "model", None) == getattr(y, "model", None) for x, y in zip(pa, pb)]))


def _queries(router: Any, prompts: list[str]) -> tuple[Any, Any, Any, Any]:
    from llmroute.router.decision import RouteQuery

    prepared = router.prepare(prompts)
    probs, costs = router.predict(prepared)
    return [RouteQuery(p) for p in prompts], probs, costs, prepared.input_tokens


if __name__ == "__main__":
    main()
