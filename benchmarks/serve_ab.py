"""``POST /route`` on several ``llmroute serve`` variants, interleaved round by round: server CPU per
request, p50/p99 and throughput of each, so that two versions of the code (or two settings) are
compared under the same machine load.

A variant is ``NAME=SRC`` (the ``src`` folder of a checkout to run the server from, e.g. a
``git worktree`` of the code before a change) optionally followed by ``,VAR=VALUE`` environment
settings of that server:

    python benchmarks/serve_ab.py --router R before=../llmroute-main/src after=src
    python benchmarks/serve_ab.py --router R log=src nolog=src,LLMROUTE_SERVE_DECISION_LOG_URL=off
    python benchmarks/serve_ab.py --router R before=../old/src after=src --long-chars 400000 --levels 1

Every server writes its own SQLite decision log in a fresh temporary folder (unless a variant says
otherwise). ``--long-chars N`` sends prompts of N characters instead of the RouterBench test prompts
(what one long-prompt request costs). Load: closed loop (``benchmarks/closed_loop.py``); only 200
answers are accepted. A given router needs the embedders of its LLMROUTE_HOME (set LLMROUTE_HOME).
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

from closed_loop import LAUNCH, ROOT, Results, Server, free_port, interleaved_rounds, run_level, spread, variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="NAME=SRC[,VAR=VALUE...] (at least two)")
    ap.add_argument("--router", required=True, help="Saved router folder (or a models:/ URI).")
    ap.add_argument("--requests", type=int, default=1000, help="Requests per variant, level and round.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="1,8,32", help="Concurrency levels, comma-separated.")
    ap.add_argument("--long-chars", type=int, default=0, help="Send prompts of this many characters instead.")
    args = ap.parse_args()
    specs = [variant(s) for s in args.variants]
    if len(specs) < 2 or len({n for n, _, _ in specs}) != len(specs):
        raise SystemExit("give at least two variants with distinct names")
    levels = [int(x) for x in args.levels.split(",")]
    if args.long_chars:
        text = "The quick brown fox jumps over the lazy dog. " * (args.long_chars // 45 + 1)
        texts = [text[: args.long_chars - 8] + f" #{i:06d}" for i in range(args.requests)]
    else:
        import pandas as pd

        df = pd.read_parquet(ROOT / "data" / "routerbench" / "test.parquet", columns=["prompt"])
        unique = df["prompt"].drop_duplicates().tolist()
        texts = [unique[i % len(unique)] for i in range(args.requests)]
    bodies = [json.dumps({"prompt": t}).encode() for t in texts]
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-serve-ab-"))
    servers: list[Server] = []
    results: Results = {}
    try:
        for name, src, extra in specs:
            env = {
                **os.environ, "PYTHONPATH": str(src), "LLMROUTE_SERVE_API_KEYS": "[]",
                "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{tmp / name}.sqlite",
                "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(tmp / f"spool-{name}"), **extra,
            }
            port = free_port()
            servers.append(Server.start(name, [sys.executable, "-c", LAUNCH, "serve", "--model", str(args.router),
                                               "--port", str(port), "--log-level", "warning"],
                                        port, env, ready_path="/ready"))
        print(f"variants {', '.join(f'{n} ({s})' for n, s, _ in specs)}; cpus {os.cpu_count()}", flush=True)
        ok = lambda status, body: status == 200  # noqa: E731
        for s in servers:  # warm-up
            run_level(s, "/route", bodies[:100], 4, ok)

        def each(r: int, c: int, results: Results) -> None:
            for s in servers:
                res = results[(s.name, c)][-1]
                print(f"round {r + 1} c={c:2d} {s.name}: CPU/request {res.cpu_ms_per_request:.2f} ms, "
                      f"p50 {res.quantile(50):.1f} ms, p99 {res.quantile(99):.1f} ms, "
                      f"{res.throughput:.0f} req/s; load {os.getloadavg()[0]:.2f}", flush=True)

        results = interleaved_rounds(servers, levels, args.rounds,
                                     lambda s, c: run_level(s, "/route", bodies, c, ok), each)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nsummary over {args.rounds} rounds of {args.requests} requests (median [min-max])")
    for c in levels:
        for s in servers:
            rs = results[(s.name, c)]
            print(f"c={c:2d} {s.name}: CPU/request {spread([x.cpu_ms_per_request for x in rs])} ms; "
                  f"p50 {spread([x.quantile(50) for x in rs], '{:.1f}')} ms; "
                  f"p99 {spread([x.quantile(99) for x in rs], '{:.1f}')} ms; "
                  f"throughput {spread([x.throughput for x in rs], '{:.0f}')} req/s")
        base = results[(servers[0].name, c)]
        for s in servers[1:]:
            ratio = [b.cpu_ms_per_request / a.cpu_ms_per_request for a, b in zip(base, results[(s.name, c)])]
            print(f"c={c:2d} CPU/request {s.name} / {servers[0].name}: {statistics.median(ratio):.2f}x "
                  f"[{min(ratio):.2f}-{max(ratio):.2f}]")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
