"""``POST /route`` beside the floor (the cheapest FastAPI endpoint under the same uvicorn settings,
``benchmarks/floor_app.py``), interleaved round by round, so that both see the same machine load.
Prints, per concurrency level, the ratio of server CPU per request (/route over the floor) and the
share of the floor's throughput that /route reaches, with p50/p99 of both; each as the median over
rounds with the range in brackets.

    python benchmarks/route_vs_floor.py --router ~/.llmroute/routers/<version>
    python benchmarks/route_vs_floor.py --router R --rounds 5 --requests 1000 --levels 1,8,32
    python benchmarks/route_vs_floor.py --router R --server-arg=--workers --server-arg=2

The llmroute server is ``llmroute serve`` with its defaults (decision log: a SQLite file in a fresh
temporary folder unless LLMROUTE_SERVE_DECISION_LOG_URL says otherwise; ``off`` turns it off). A given
router needs the embedders of its LLMROUTE_HOME (set LLMROUTE_HOME to it). Load: closed loop (see
``benchmarks/closed_loop.py``); every answer is checked (200 and a ``model`` in the body). Numbers
depend on the machine and its load: the load average is printed with every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import LAUNCH, ROOT, Results, Server, free_port, interleaved_rounds, run_level, spread


def prompts(n: int) -> list[str]:
    import pandas as pd

    df = pd.read_parquet(ROOT / "data" / "routerbench" / "test.parquet", columns=["prompt"])
    unique = df["prompt"].drop_duplicates().tolist()
    return [unique[i % len(unique)] for i in range(n)]


def ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"model"' in body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder (or a models:/ URI).")
    ap.add_argument("--requests", type=int, default=1000, help="Requests per target, level and round.")
    ap.add_argument("--rounds", type=int, default=3, help="Rounds; each runs every level on both targets.")
    ap.add_argument("--levels", default="1,8,32", help="Concurrency levels, comma-separated.")
    ap.add_argument("--server-arg", action="append", default=[], help="Extra argument of `llmroute serve` (repeatable).")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-floor-bench-"))
    home = os.environ.get("LLMROUTE_HOME") or str(tmp / "home")
    env = {
        **os.environ, "LLMROUTE_HOME": home, "LLMROUTE_SERVE_API_KEYS": "[]",
        "LLMROUTE_SERVE_DECISION_LOG_URL": os.environ.get(
            "LLMROUTE_SERVE_DECISION_LOG_URL", f"sqlite:///{tmp / 'decisions.sqlite'}"
        ),
    }
    servers: list[Server] = []
    try:
        p1, p2 = free_port(), free_port()
        floor = Server.start("floor", [sys.executable, str(Path(__file__).parent / "floor_app.py"), "--port", str(p1)],
                             p1, env)
        servers.append(floor)
        route = Server.start(
            "llmroute", [sys.executable, "-c", LAUNCH, "serve", "--model", str(args.router), "--port", str(p2),
                         "--log-level", "warning", *args.server_arg],
            p2, env, ready_path="/ready",
        )
        servers.append(route)
        print(f"floor RSS {floor.rss():.0f} MiB, llmroute RSS {route.rss():.0f} MiB (router {args.router}, "
              f"args {' '.join(args.server_arg) or '-'}); cpus {os.cpu_count()}; "
              f"decision log {env['LLMROUTE_SERVE_DECISION_LOG_URL']}")
        bodies = [json.dumps({"prompt": t}).encode() for t in prompts(args.requests)]
        for s in servers:  # warm-up
            run_level(s, "/route", bodies[:100], 4, ok)

        def pair(r: int, c: int, results: Results) -> None:
            f, q = results[("floor", c)][-1], results[("llmroute", c)][-1]
            print(f"round {r + 1} c={c:>2}: CPU/request floor {f.cpu_ms_per_request:.2f} ms, /route "
                  f"{q.cpu_ms_per_request:.2f} ms ({q.cpu_ms_per_request / f.cpu_ms_per_request:.2f}x); "
                  f"throughput floor {f.throughput:.0f}, /route {q.throughput:.0f} req/s "
                  f"({q.throughput / f.throughput:.0%}); load {os.getloadavg()[0]:.2f}", flush=True)

        results = interleaved_rounds(servers, levels, args.rounds,
                                     lambda s, c: run_level(s, "/route", bodies, c, ok), pair)
        print(f"\nsummary over {args.rounds} rounds of {args.requests} requests (median [min-max]); "
              f"llmroute RSS {route.rss():.0f} MiB, floor RSS {floor.rss():.0f} MiB")
        for c in levels:
            fs, qs = results[("floor", c)], results[("llmroute", c)]
            cpu_ratio = [q.cpu_ms_per_request / f.cpu_ms_per_request for f, q in zip(fs, qs)]
            share = [q.throughput / f.throughput * 100 for f, q in zip(fs, qs)]
            print(
                f"c={c:>2}: CPU/request /route {spread([q.cpu_ms_per_request for q in qs])} ms vs floor "
                f"{spread([f.cpu_ms_per_request for f in fs])} ms = {spread(cpu_ratio)}x; throughput /route "
                f"{spread([q.throughput for q in qs], '{:.0f}')} vs floor {spread([f.throughput for f in fs], '{:.0f}')} "
                f"req/s = {spread(share, '{:.0f}')}%; p50 /route {spread([q.quantile(50) for q in qs], '{:.1f}')} ms "
                f"floor {spread([f.quantile(50) for f in fs], '{:.1f}')} ms; p99 /route "
                f"{spread([q.quantile(99) for q in qs], '{:.1f}')} ms floor {spread([f.quantile(99) for f in fs], '{:.1f}')} ms"
            )
        print(f"load average at the end {os.getloadavg()[0]:.2f}; medians of per-round ratios: "
              + ", ".join(f"c={c} {statistics.median(q.cpu_ms_per_request / f.cpu_ms_per_request for f, q in zip(results[('floor', c)], results[('llmroute', c)])):.2f}x"
                          for c in levels))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
