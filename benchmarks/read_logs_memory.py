"""Peak memory of reading benchmark logs: ``read_logs`` (read and validate) against ``pandas.read_parquet``
alone, each in a fresh process, on synthetic logs from ``benchmarks/train_scale.py``.

    python benchmarks/read_logs_memory.py --rows 1000000
    python benchmarks/read_logs_memory.py --logs logs.parquet --runs 3

Prints each reader's peak resident memory (the kernel's high-water mark, ``ru_maxrss``) and wall time,
and the machine's load average (memory depends little on it, time does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

READERS = {
    "pandas.read_parquet": "import pandas as pd; df = pd.read_parquet(path)",
    "llmroute read_logs": "from llmroute.data.importers import read_logs; df = read_logs(path)",
}
CHILD = """
import resource, sys, time
path = sys.argv[1]
t0 = time.perf_counter()
{read}
print(len(df), time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def measure(code: str, path: Path) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(read=code), str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic log rows to generate (without --logs)")
    ap.add_argument("--logs", type=Path, help="an existing Parquet log file instead")
    ap.add_argument("--runs", type=int, default=1, help="runs of each reader, interleaved")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.logs
        if path is None:
            from train_scale import generate

            path = Path(tmp) / "logs.parquet"
            n = generate(args.rows, path)
            print(f"generated {n} rows -> {path} ({path.stat().st_size / 2**20:.0f} MiB)", flush=True)
        for run in range(1, args.runs + 1):
            for name, code in READERS.items():
                rows, wall, peak = measure(code, path)
                print(f"run {run}: {name:<20} {rows} rows, peak {peak / 2**30:.2f} GiB, {wall:.1f} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
