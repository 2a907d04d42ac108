"""In-process routing latency (p50/p99) for prompts of about 50, 200 and 500 tokens, and training +
evaluation time on the bundled RouterBench logs.

    python benchmarks/route_latency.py                # uses a fresh LLMROUTE_HOME under /tmp
    python benchmarks/route_latency.py --skip-train --model ~/.llmroute/routers/<version>

Prints one line per measurement. Numbers depend on the machine: run it where you deploy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "Write a python function that returns the longest increasing subsequence of a list of integers "
    "and explain its time complexity with an example for a list of ten numbers"
).split()


def prompt_of(tokens: int) -> str:
    from llmroute.data.tokens import count_tokens

    words: list[str] = []
    i = 0
    while count_tokens(" ".join(words)) < tokens:
        words.append(WORDS[i % len(WORDS)])
        i += 1
    return " ".join(words)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="saved router folder (default: train one)")
    ap.add_argument("--skip-train", action="store_true", help="only measure routing latency")
    ap.add_argument("--repeats", type=int, default=300, help="route() calls per prompt length")
    ap.add_argument("--embedder", default="minilm-static")
    args = ap.parse_args()

    home = Path(os.environ.get("LLMROUTE_HOME") or tempfile.mkdtemp(prefix="llmroute-bench-"))
    env = {**os.environ, "LLMROUTE_HOME": str(home)}
    exe = [sys.executable, "-m", "llmroute.cli"]
    if not args.skip_train:
        # the first run builds the static embedder and fills the embedding cache; time a second run too
        t_first = timed(exe + ["train", "--logs", str(ROOT / "data/routerbench/train.parquet"), "--embedder", args.embedder], env)
        t_train = timed(exe + ["train", "--logs", str(ROOT / "data/routerbench/train.parquet"), "--embedder", args.embedder], env)
        t_eval = timed(
            exe + ["evaluate", "--logs", str(ROOT / "data/routerbench/test.parquet"), "--report-dir", str(home / "report")],
            env,
        )
        print(f"train (first run, builds embedder + cache): {t_first:.1f} s")
        print(f"train (cached embeddings):                  {t_train:.1f} s")
        print(f"evaluate (all baselines, 1000 bootstrap):   {t_eval:.1f} s")
        print(f"quickstart train+evaluate:                  {t_first + t_eval:.1f} s")

    os.environ["LLMROUTE_HOME"] = str(home)
    from llmroute.artifacts.loading import load_router
    from llmroute.config import load_settings

    settings = load_settings()
    router = load_router(args.model, settings)  # None: the latest trained router
    print(f"router {router.version}, embedder {router.embedder.spec}, {len(router.models)} models")
    for tokens in (50, 200, 500):
        text = prompt_of(tokens)
        for _ in range(20):
            router.route(text)
        samples = []
        cpu0 = time.process_time()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            router.route(text)
            samples.append((time.perf_counter() - t0) * 1000)
        cpu = (time.process_time() - cpu0) / args.repeats * 1000  # every thread of the process
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[int(0.99 * (len(samples) - 1))]
        print(f"route() {tokens:>3}-token prompt: p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu:.2f} ms per call "
              f"({args.repeats} calls; load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
