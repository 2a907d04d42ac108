"""Training at scale: wall time, CPU time, peak memory per process and AIQ against the number of log rows,
in one process and on a Dask LocalCluster.

    python benchmarks/train_scale.py --sizes 100000 --modes single,dask:2
    python benchmarks/train_scale.py --sizes 1000000 --modes dask:2 --keep-logs
    python benchmarks/train_scale.py --sizes 1000000 --modes dask:2 --stop-after 2400   # what 40 min reach

Synthetic logs come from the bundled RouterBench training split (2,218 prompts x 11 models): copy c of
a prompt gets a distinct id and a distinct text (about a fifth of the words of its question, the part
the router embeds, replaced by words drawn from the other questions; the few-shot exemplars are kept),
each outcome flips with probability 0.1, costs are scaled by a log-normal factor, a tenth of the (prompt,
model) rows is left out (partial coverage) and code answers get a per-copy marker. Rows are written one
copy at a time (one Parquet row group each, so a size never has to fit in memory here).

Each training runs as ``llmroute train --no-track`` in a subprocess; the process tree is sampled every
0.5 s for its resident memory: the peak of the main process and of each Dask worker are printed, with
wall and CPU time, and a table per training stage (wall, CPU, peak memory of each process; a stage
begins when the training's progress bar names it). AIQ is the learned router's on the bundled RouterBench test split (``llmroute
evaluate``, baselines learning from the bundled training split). The machine's load average is printed
with each run: on a shared machine wall time depends on it, CPU time and memory much less.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "data" / "routerbench" / "train.parquet"
TEST = ROOT / "data" / "routerbench" / "test.parquet"


def generate(rows: int, out: Path, seed: int = 0, flip: float = 0.1, drop: float = 0.1) -> int:
    """Write about ``rows`` synthetic log rows to ``out`` (see the module docstring); returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmroute.data.importers import read_logs

    base = read_logs(BASE)
    firsts = base.drop_duplicates("prompt_id")
    heads, tails = zip(*(_split(str(p)) for p in firsts["prompt"]))
    vocab = np.array(sorted({w for t in tails for w in t.split() if w.isalpha() and len(w) > 2}))
    head_of = dict(zip(firsts["prompt_id"], heads))
    tail_of = dict(zip(firsts["prompt_id"], tails))
    per_copy = len(base) * (1 - drop)
    copies = max(1, int(round(rows / per_copy)))
    rng = np.random.default_rng(seed)
    written = 0
    writer = None
    try:
        for c in range(copies):
            keep = rng.random(len(base)) >= drop
            df = base[keep].copy()
            texts = {pid: head_of[pid] + _perturb(tail_of[pid], vocab, rng) for pid in df["prompt_id"].unique()}
            df["prompt"] = df["prompt_id"].map(texts)
            df["prompt_id"] = df["prompt_id"] + f"#s{c}"
            q = df["quality"].to_numpy()
            flips = rng.random(len(df)) < flip
            df["quality"] = np.where(flips, 1.0 - q, q)
            df["cost_usd"] = df["cost_usd"] * rng.lognormal(0.0, 0.1, len(df))
            code = df["task"].eq("mbpp").to_numpy()
            df.loc[code, "response"] = df.loc[code, "response"] + f"\n# variant {c}"
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema, compression="zstd")
            writer.write_table(table)
            written += len(df)
    finally:
        if writer is not None:
            writer.close()
    return written


def _split(prompt: str) -> tuple[str, str]:
    """(few-shot head, last paragraph): the last paragraph is what the router embeds."""
    cut = prompt.rstrip().rfind("\n\n")
    return (prompt[: cut + 2], prompt[cut + 2 :]) if cut >= 0 else ("", prompt)


def _perturb(text: str, vocab: np.ndarray, rng: np.random.Generator, share: float = 0.2) -> str:
    words = text.split(" ")
    idx = np.nonzero(rng.random(len(words)) < share)[0]
    for i in idx:
        if words[i].isalpha():
            words[i] = str(vocab[rng.integers(len(vocab))])
    return " ".join(words)


@dataclass
class Usage:
    """Peak resident memory per process (by role) and CPU seconds of a process tree, plus the samples
    (time, resident memory per process, CPU seconds of the tree) the per-stage table is cut from."""

    peak_rss: dict[int, int] = field(default_factory=dict)
    role: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    samples: list[tuple[float, dict[int, int], float]] = field(default_factory=list)


def watch(proc: subprocess.Popen, usage: Usage, stop: threading.Event, t0: float) -> None:
    import psutil

    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss_now: dict[int, int] = {}
        for p in procs:
            try:
                rss = p.memory_info().rss
                t = p.cpu_times()
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            rss_now[p.pid] = rss
            usage.peak_rss[p.pid] = max(usage.peak_rss.get(p.pid, 0), rss)
            usage.cpu[p.pid] = t.user + t.system
            usage.role.setdefault(p.pid, "main" if p.pid == proc.pid else (
                "dask worker" if ("spawn" in cmd or "multiprocessing" in cmd) and "resource_tracker" not in cmd else "child"))
        usage.samples.append((time.perf_counter() - t0, rss_now, sum(usage.cpu.values())))
        stop.wait(0.5)


_STAGE = re.compile(r"^training \(([^):]+)(?::\s*([^)]*))?\)")


def stage_of(segment: str) -> str | None:
    """The training stage a progress-bar segment names (``training (answer scorer: CV fold 2/5)`` ->
    ``answer scorer: CV folds``), or None."""
    m = _STAGE.match(segment)
    if not m:
        return None
    phase, label = m.group(1).strip(), (m.group(2) or "").strip()
    label = re.sub(r"\s*\d+/\d+$", "", label)
    label = {"CV fold": "CV folds", "out-of-fold predictions": "CV folds", "final model": "final fit"}.get(label, label)
    return f"{phase}: {label}" if label else phase


def read_stages(stream: Any, log: Any, t0: float, stages: list[tuple[float, str]]) -> None:
    """Copy the training's output to ``log``, noting when each stage first appears (``stages``)."""
    buf = b""
    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        log.write(chunk)
        log.flush()
        buf += chunk
        *parts, buf = re.split(rb"[\r\n]", buf)
        now = time.perf_counter() - t0
        # a bar's line ends with the next \r, written only at its next update: the unfinished last
        # segment counts as soon as its label is complete, or a stage would start at the next one's time
        for part in [*parts, buf]:
            name = stage_of(part.decode("utf-8", "replace").strip())
            if name and name not in {n for _, n in stages}:
                stages.append((now, name))
    log.flush()


def stage_table(stages: list[tuple[float, str]], usage: Usage, wall: float, main_pid: int) -> str:
    """Per stage: wall seconds, CPU seconds of the process tree, peak resident memory of the main
    process and of each Dask worker (from the 0.5 s samples inside the stage)."""
    workers = sorted(p for p, r in usage.role.items() if r == "dask worker")
    head = f"  {'stage':<42} {'wall s':>7} {'CPU s':>7} {'main GiB':>9}" + "".join(f" {'w' + str(i + 1) + ' GiB':>7}" for i in range(len(workers)))
    lines = [head]
    bounds = [*stages, (wall, "")]
    for (start, name), (end, _) in zip(bounds, bounds[1:]):
        inside = [s for s in usage.samples if start <= s[0] <= end] or [min(usage.samples, key=lambda s: abs(s[0] - end))]
        before = [s for s in usage.samples if s[0] <= start]
        cpu0 = before[-1][2] if before else 0.0
        cpu = inside[-1][2] - cpu0
        lines.append(f"  {name:<42} {end - start:7.1f} {cpu:7.1f} {_peak(inside, main_pid):9.2f}"
                     + "".join(f" {_peak(inside, w):7.2f}" for w in workers))
    return "\n".join(lines)


def _peak(samples: list[tuple[float, dict[int, int], float]], pid: int) -> float:
    return max(s[1].get(pid, 0) for s in samples) / 2**30


def train(logs: Path, mode: str, home: Path, out: Path, stop_after: float | None = None
          ) -> tuple[float, Usage, str, list[tuple[float, str]], bool]:
    """Run one training; ``stop_after`` seconds: stop it there (its process group: the Dask workers
    too) and report what it measured up to then. Returns (wall, usage, log text, stages, stopped)."""
    cmd = [sys.executable, "-m", "llmroute.cli", "train", "--logs", str(logs), "--no-track", "--out", str(out)]
    if mode.startswith("dask:"):
        cmd += ["--dask", f"local:{mode.split(':')[1]}"]
    env = {**os.environ, "LLMROUTE_HOME": str(home), "PYTHONUNBUFFERED": "1"}  # printed lines arrive in order
    usage, stop = Usage(), threading.Event()
    stages: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    log = out.with_suffix(".log")
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        stopped = threading.Event()

        def stop_training() -> None:
            stopped.set()
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        timer = threading.Timer(stop_after, stop_training) if stop_after else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        th = threading.Thread(target=watch, args=(proc, usage, stop, t0), daemon=True)
        th.start()
        read_stages(proc.stdout, fh, t0, stages)
        code = proc.wait()
        if timer is not None:
            timer.cancel()
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    if stopped.is_set():
        return wall, usage, log.read_text(errors="replace"), stages, True
    if code != 0:
        raise SystemExit(f"training failed ({mode}, exit {code}); see {log}")
    return wall, usage, log.read_text(errors="replace"), stages, False


def aiq(folder: Path, home: Path) -> float:
    report = folder.parent / (folder.name + "-report")
    subprocess.run(
        [sys.executable, "-m", "llmroute.cli", "evaluate", "--model", str(folder), "--logs", str(TEST), "--report-dir",
         str(report), "--train-logs", str(BASE), "--bootstrap", "10"],
        check=True, env={**os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_QUIET": "1"}, stdout=subprocess.DEVNULL,
    )
    return float(json.loads((report / "report.json").read_text())["routers"]["learned"]["aiq"])


def _rows_in(logs: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(logs).metadata.num_rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated row counts (e.g. 100000,1000000,10000000)")
    ap.add_argument("--modes", default="single,dask:2", help="comma-separated: single, dask:N (a LocalCluster of N workers)")
    ap.add_argument("--work", type=Path, help="folder for logs, routers and state (default: a new temp folder)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the generated logs")
    ap.add_argument("--no-aiq", action="store_true", help="skip the evaluation")
    ap.add_argument("--stop-after", type=float, help="stop each training after this many seconds and print what "
                    "it measured up to then (for sizes that do not finish in the time there is)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    work = args.work or Path(tempfile.mkdtemp(prefix="llmroute-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    print(f"work folder {work}")
    for size in (int(s) for s in args.sizes.split(",")):
        logs = work / f"logs-{size}.parquet"
        if not logs.exists():
            t0 = time.perf_counter()
            n = generate(size, logs)
            print(f"generated {n} rows in {time.perf_counter() - t0:.0f} s -> {logs}")
        for mode in args.modes.split(","):
            out = work / f"router-{size}-{mode.replace(':', '')}"
            load0 = os.getloadavg()[0]
            wall, usage, text, stages, stopped = train(logs, mode, home, out, args.stop_after)
            main_pid = next(p for p, r in usage.role.items() if r == "main")
            workers = sorted((usage.peak_rss[p] for p, r in usage.role.items() if r == "dask worker"), reverse=True)
            cpu = sum(usage.cpu.values())
            line = (f"rows {size:>9} ({_rows_in(logs):,} written) {mode:<7} wall {wall:7.0f} s  cpu {cpu:7.0f} s  peak RSS main "
                    f"{usage.peak_rss[main_pid] / 2**30:5.2f} GiB")
            if workers:
                line += "  workers " + ", ".join(f"{w / 2**30:.2f}" for w in workers) + " GiB"
            found = re.search(r"training on (\d+) prompts x (\d+) models", text)
            prompts = f"{found.group(1)} prompts x {found.group(2)} models" if found else ""
            if stopped:
                line += f"  STOPPED after {args.stop_after:.0f} s (in stage {stages[-1][1] if stages else '-'!r})"
            elif not args.no_aiq:
                line += f"  AIQ {aiq(out, home):.4f}"
            print(line + f"  (load {load0:.1f} -> {os.getloadavg()[0]:.1f}; {prompts})", flush=True)
            print(stage_table(stages, usage, wall, main_pid), flush=True)
        if not args.keep_logs:
            logs.unlink()


if __name__ == "__main__":
    main()
