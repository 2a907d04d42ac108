"""HTTP latency of ``POST /route`` on the serving layer: p50/p99 and throughput at concurrency 1, 8 and
32, plus the server's resident memory and CPU time per request. The service runs as a ``llmroute
serve`` subprocess on 127.0.0.1.

    python benchmarks/serve_route_latency.py --router ~/.llmroute/routers/<version>
    python benchmarks/serve_route_latency.py            # trains a 200-prompt router under /tmp first
    python benchmarks/serve_route_latency.py --router R --server-arg=--workers --server-arg=2

The load is closed-loop: at concurrency c, c clients each keep one HTTP/1.1 keep-alive connection and
send their next request as soon as the previous answer is in, so throughput is what the server
sustains at that concurrency and latency includes queueing at the server but no client-side backlog.
The client is a minimal HTTP/1.1 writer/reader on asyncio streams (a few tens of microseconds per
request, against ~1 ms for httpx), because it shares the machine's cores with the server; its own CPU
time is printed too. Every answer is checked (status 200 and a ``model`` in the body).

Prints one line per measurement. Numbers depend on the machine: run it where you deploy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import LAUNCH, Connection, cpu_seconds, free_port, process_tree, rss_mb

ROOT = Path(__file__).resolve().parents[1]


def train_small(home: Path) -> Path:
    from llmroute.config import Settings
    from llmroute.data.importers import read_logs, write_logs
    from llmroute.training.train import TrainConfig, train_router

    df = read_logs(ROOT / "data" / "routerbench" / "train.parquet")
    ids = sorted(df["prompt_id"].unique())[:200]
    write_logs(df[df["prompt_id"].isin(ids)], home / "logs.parquet")
    _, folder = train_router(home / "logs.parquet", Settings(home=home), TrainConfig(embedder="minilm"),
                             out_dir=home / "router")
    return folder


def prompts(n: int) -> list[str]:
    import pandas as pd

    df = pd.read_parquet(ROOT / "data" / "routerbench" / "test.parquet", columns=["prompt"])
    unique = df["prompt"].drop_duplicates().tolist()
    return [unique[i % len(unique)] for i in range(n)]


async def level(port: int, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    """Closed loop: ``concurrency`` connections share ``bodies``; (latencies in ms, wall s, errors)."""
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(bodies))
    conns = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal errors
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            status, answer = await conn.post(b"/route", body)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += status != 200 or b'"model"' not in answer

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return latencies, wall, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", type=Path, help="Saved router folder (default: train a small one).")
    ap.add_argument("--requests", type=int, default=500, help="Requests per concurrency level.")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--server-arg", action="append", default=[], help="Extra argument of `llmroute serve` (repeatable).")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-serve-bench-"))
    # a given router needs the embedders of its LLMROUTE_HOME (same fingerprint); a trained one gets a fresh home
    home = Path(os.environ["LLMROUTE_HOME"]) if args.router and os.environ.get("LLMROUTE_HOME") else tmp / "home"
    folder = args.router or train_small(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_API_KEYS": "[]",
        "LLMROUTE_SERVE_DECISION_LOG_URL": os.environ.get(
            "LLMROUTE_SERVE_DECISION_LOG_URL", f"sqlite:///{tmp / 'decisions.sqlite'}"
        ),
    }
    cmd = [sys.executable, "-c", LAUNCH, "serve", "--model", str(folder), "--port", str(port), "--log-level", "warning",
           *args.server_arg]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0, streak = time.perf_counter(), 0
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                # each get is a new connection; with --workers every process must answer ready
                ready = httpx.get(f"{url}/ready", timeout=2)
                streak = streak + 1 if ready.status_code == 200 else 0
                if streak >= 20:
                    break
                if streak:
                    continue
            except httpx.TransportError:
                ready, streak = None, 0
            if time.perf_counter() - t0 > 180:
                raise SystemExit(f"server not ready after 180 s: {ready.text if ready is not None else 'no answer'}")
            time.sleep(0.2)
        print(f"server ready in {time.perf_counter() - t0:.1f} s (pid {proc.pid}, {len(process_tree(proc.pid))} "
              f"process(es), router {folder}, args {' '.join(args.server_arg) or '-'}); RSS {rss_mb(proc.pid)[0]:.0f} MiB; "
              f"cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f}")
        texts = prompts(args.requests)
        bodies = [json.dumps({"prompt": t}).encode() for t in texts]
        asyncio.run(level(port, bodies[:50], 4))  # warm-up
        for c in (int(x) for x in args.levels.split(",")):
            cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
            lat, wall, errors = asyncio.run(level(port, bodies, c))
            server_cpu, client_cpu = cpu_seconds(proc.pid) - cpu0, time.process_time() - client0
            q = statistics.quantiles(lat, n=100)
            rss, peak = rss_mb(proc.pid)
            print(f"concurrency {c:>2}: {len(lat)} requests, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
                  f"throughput {len(lat) / wall:.1f} req/s, errors {errors}, server RSS {rss:.0f} MiB (peak {peak:.0f}), "
                  f"CPU per request: server {server_cpu / len(lat) * 1000:.2f} ms, client {client_cpu / len(lat) * 1000:.2f} ms; "
                  f"load {os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
