"""Start-up time of the command line: wall time of `llmroute --help` (and a group's and a command's
--help) against the floor of starting Python at all (`python -c pass`) and of importing typer, the CLI
library every `--help` needs.

    python benchmarks/cli_startup.py               # 15 runs of each, interleaved
    python benchmarks/cli_startup.py --runs 30
    python benchmarks/cli_startup.py --baseline-src ../old-checkout/src   # also time another version's --help

Each run is a fresh process (`python -m llmroute.cli ...`), so the numbers include the interpreter's own
start. The runs are interleaved (one of each in turn) so that other load on the machine falls on all of
them alike; read the ratios to the floor rather than the seconds, and note the load average printed with
them. The goal of issue 16: `llmroute --help` under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass (floor)": ["-c", "pass"],
    "python -c 'import typer'": ["-c", "import typer"],
    "llmroute --help": ["-m", "llmroute.cli", "--help"],
    "llmroute train --help": ["-m", "llmroute.cli", "train", "--help"],
    "llmroute budgets simulate --help": ["-m", "llmroute.cli", "budgets", "simulate", "--help"],
}


def timed(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one fresh ``python ARGS`` process (its output discarded; a failure stops the run)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="fresh processes per command (default 15)")
    ap.add_argument("--baseline-src", help="a src/ folder of another llmroute version: its `llmroute --help` is "
                    "timed in the same runs (PYTHONPATH set to it), for a before/after comparison")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    env = {**os.environ, "LLMROUTE_HOME": tempfile.mkdtemp(prefix="llmroute-startup-")}
    commands = {name: (cmd, env) for name, cmd in COMMANDS.items()}
    if args.baseline_src:
        if not os.path.isdir(os.path.join(args.baseline_src, "llmroute")):
            ap.error(f"--baseline-src: {args.baseline_src} has no llmroute package")
        commands["baseline: llmroute --help"] = (["-m", "llmroute.cli", "--help"],
                                                 {**env, "PYTHONPATH": args.baseline_src})
    times: dict[str, list[float]] = {name: [] for name in commands}
    load_before = os.getloadavg()
    for i in range(args.runs):
        for name, (cmd, cmd_env) in commands.items():
            times[name].append(timed(cmd, cmd_env))
        print(f"run {i + 1}/{args.runs}", file=sys.stderr)
    load_after = os.getloadavg()

    floor = statistics.median(times["python -c pass (floor)"])
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; {os.cpu_count()} CPUs; "
          f"{args.runs} runs each")
    print(f"{'command':<34} {'median s':>9} {'min s':>7} {'max s':>7} {'x floor':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<34} {med:>9.3f} {min(ts):>7.3f} {max(ts):>7.3f} {med / floor:>8.1f}")
    helps = statistics.median(times["llmroute --help"])
    print(f"llmroute --help: median {helps:.3f} s ({'under' if helps < 1.0 else 'NOT under'} the 1 s goal)")


if __name__ == "__main__":
    main()
