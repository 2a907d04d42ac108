"""HTTP latency of ``POST /route`` on the serving layer: p50/p99 and throughput at concurrency 1, 8 and
32, plus the server's resident memory. The service runs as a uvicorn subprocess on 127.0.0.1.

    python benchmarks/serve_route_latency.py --router ~/.llmroute/routers/<version>
    python benchmarks/serve_route_latency.py            # trains a 200-prompt router under /tmp first

Prints one line per measurement. Numbers depend on the machine: run it where you deploy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = (
    "import sys, typer; from llmroute.cli_serve import register; "
    "app = typer.Typer(); register(app); app(sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MiB, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    kb = lambda k: float(fields[k].split()[0]) / 1024  # noqa: E731
    return kb("VmRSS"), kb("VmHWM")


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


async def level(url: str, texts: list[str], concurrency: int) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(texts))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while queue:
                text = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/route", json={"prompt": text})
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, wall, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", type=Path, help="Saved router folder (default: train a small one).")
    ap.add_argument("--requests", type=int, default=500, help="Requests per concurrency level.")
    ap.add_argument("--levels", default="1,8,32")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-serve-bench-"))
    home = tmp / "home"
    folder = args.router or train_small(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_API_KEYS": "[]"}
    cmd = [sys.executable, "-c", LAUNCH, "serve", "--model", str(folder), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > 180:
                raise SystemExit("server not ready after 180 s")
            time.sleep(0.2)
        print(f"server ready in {time.perf_counter() - t0:.1f} s (pid {proc.pid}, router {folder}); "
              f"RSS {rss_mb(proc.pid)[0]:.0f} MiB; cpus {os.cpu_count()}")
        asyncio.run(level(url, prompts(20), 1))  # warm-up
        texts = prompts(args.requests)
        for c in (int(x) for x in args.levels.split(",")):
            lat, wall, errors = asyncio.run(level(url, texts, c))
            q = statistics.quantiles(lat, n=100)
            rss, peak = rss_mb(proc.pid)
            print(f"concurrency {c:>2}: {len(lat)} requests, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
                  f"throughput {len(lat) / wall:.1f} req/s, errors {errors}, server RSS {rss:.0f} MiB (peak {peak:.0f})")
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
