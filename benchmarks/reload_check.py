"""What a reload's isolated check costs, before and after it was made cheap and shared.

    python benchmarks/reload_check.py                 # the latest router `llmroute train` saved
    python benchmarks/reload_check.py --router DIR --workers 4

Times, in one run on the same machine (so the ratios hold whatever its load; the load average is
printed):

1. **fresh interpreter, folder**: a new Python process imports llmroute, loads the candidate with a
   stand-in embedder and smoke-routes it (what every worker's check did for a folder);
2. **fresh interpreter, registry**: the same plus what the check of a registry version also did in
   the child: import MLflow and load the real embedder named in router.json;
3. **forked check**: the check forked from the preloaded check server (what a check costs now);
4. **N workers at once**: ``--workers`` reloads of the same candidate sharing one state folder, all
   started together (what N worker processes of a replica do after a promotion): how many checks ran
   and the slowest worker's wait.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRESH = """
import sys, time
from pathlib import Path
from llmroute.serving.candidate import _load_with_stand_in, smoke_served
router, scorer = _load_with_stand_in(Path(sys.argv[1]), True)
smoke_served(router, scorer)
if sys.argv[2] == "registry":
    import mlflow.artifacts  # noqa: F401
    from llmroute.config import Settings
    from llmroute.router.embedder import load_embedder
    from llmroute.router.router import read_router_meta
    load_embedder(read_router_meta(Path(sys.argv[1]))["embedder"]["spec"], Settings().embedders_dir).encode(["2 + 2?"])
"""


def _fresh(folder: Path, kind: str) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh interpreter's check."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH, str(folder), kind], check=True)
    after = os.times()
    return time.perf_counter() - t0, (after.children_user - before.children_user) + (
        after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, help="a saved router folder (default: the latest `llmroute train` saved)")
    ap.add_argument("--workers", type=int, default=4, help="simultaneous reloads in step 4")
    ap.add_argument("--repeat", type=int, default=3, help="runs of steps 1-3 (the median is printed)")
    args = ap.parse_args()

    from llmroute.config import load_settings
    from llmroute.serving.candidate import check_candidate, check_in_child, prepare_candidate, start_check_server
    from llmroute.training.train import latest_router_dir

    settings = load_settings()
    folder = args.router or latest_router_dir(settings)
    print(f"router {folder}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="llmroute-reload-check-"))
    core = load_settings(home=work / "home")

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    for kind in ("folder", "registry"):
        runs = [_fresh(folder, kind) for _ in range(args.repeat)]
        print(f"fresh interpreter, {kind:<8}: wall {median([w for w, _ in runs]):6.2f} s, "
              f"CPU {median([c for _, c in runs]):6.2f} s (median of {args.repeat})")

    t0 = time.perf_counter()
    start_check_server()
    print(f"check server start (once per worker, alongside its first load): wall {time.perf_counter() - t0:.2f} s")
    candidate = prepare_candidate(str(folder), core)
    walls = []
    try:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            asyncio.run(check_in_child(candidate, core, True, 300.0))
            walls.append(time.perf_counter() - t0)
    finally:
        candidate.discard()
    print(f"forked check             : wall {median(walls):6.2f} s (median of {args.repeat})")

    candidates = [prepare_candidate(str(folder), core) for _ in range(args.workers)]

    async def together() -> list[tuple[str, float]]:
        outs = await asyncio.gather(*(check_candidate(c, core, True, 300.0) for c in candidates))
        return [(o.how, o.seconds) for o in outs]

    try:
        outcomes = asyncio.run(together())
    finally:
        for c in candidates:
            c.discard()
    ran = sum(1 for how, _ in outcomes if how == "ran")
    print(f"{args.workers} workers at once       : {ran} check(s) ran, the others used its record; slowest worker "
          f"waited {max(s for _, s in outcomes):.2f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
