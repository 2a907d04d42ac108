"""What a reload's heap handling costs: a full collection after the swap against freezing alone.

    python benchmarks/reload_heap.py --router FOLDER [--swaps 5]

In a process that has imported what a registry-polling service imports (the service, MLflow), loads the
router, freezes the heap as the service does, then swaps in a fresh copy of the router (reusing the
embedder, as a reload does) ``--swaps`` times each way: (a) unfreeze, collect, freeze; (b) freeze only
(what `llmroute.serving.state.freeze_heap` does now when the embedder is kept). Prints the median
[min-max] of each and the number of objects; the load average with it (a collection's time follows it).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--home", type=Path, default=None, help="LLMROUTE_HOME with the router's embedder (default: the setting).")
    ap.add_argument("--swaps", type=int, default=5)
    args = ap.parse_args()
    import mlflow  # noqa: F401  - imported by a service that polls a registry

    import llmroute.serving.app  # noqa: F401
    from llmroute.artifacts.loading import load_served
    from llmroute.config import Settings

    settings = Settings(home=args.home) if args.home is not None else Settings()
    router, _ = load_served(args.router, settings)
    router.route("What is the boiling point of water at sea level?")
    gc.collect()
    gc.freeze()
    timings: dict[str, list[float]] = {"unfreeze, collect, freeze": [], "freeze only": []}
    for _ in range(args.swaps):
        for how, times in timings.items():
            fresh, _ = load_served(args.router, settings, reuse=router.embedder)
            fresh.route("What is the boiling point of water at sea level?")
            router = fresh  # the swap: the old router's last reference goes
            t = time.perf_counter()
            if how.startswith("unfreeze"):
                gc.unfreeze()
                gc.collect()
            gc.freeze()
            times.append(time.perf_counter() - t)
    objects = len(gc.get_objects()) + gc.get_freeze_count()
    print(f"{objects:,} objects; load average {os.getloadavg()[0]:.1f}")
    for how, times in timings.items():
        ms = [t * 1000 for t in times]
        print(f"after a swap, {how}: {statistics.median(ms):.2f} ms [{min(ms):.2f}-{max(ms):.2f}]")


if __name__ == "__main__":
    main()
