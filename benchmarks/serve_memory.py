"""Memory of one ``llmroute serve`` process: resident set size once the router is loaded and after
``--requests`` ``POST /route`` requests, the packages the process imported, and each big package's
own share (imported alone in a fresh Python, minus a bare Python).

    python benchmarks/serve_memory.py --router ~/.llmroute/routers/<version>
    python benchmarks/serve_memory.py --router FOLDER before=OLD/src now=src     # two source trees

Each variant (``NAME=SRC``: a checkout's ``src`` folder; default ``now=`` this checkout's) is started
``--runs`` times as a fresh ``llmroute serve`` process, variants alternating, each with its own
temporary home (the router's embedders are linked in, never rebuilt) and SQLite decision log, the
service's defaults otherwise. RSS is the server process's own (``VmRSS``); its children (the reload
check's fork server and multiprocessing's resource tracker) are printed apart. Medians over runs.
The imported packages come from ``sys.modules`` written by the server process at exit (after the
requests); the shares are measured once per package. Numbers depend on the machine: compare variants
from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import ROOT, Server, free_port, process_tree, run_level

# `llmroute serve` itself (the whole command line), writing sys.modules to $MODULES_OUT at exit
WRAPPER = (
    "import atexit, json, os, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from llmroute.cli import app\n"
    "app(sys.argv[1:], prog_name='llmroute')\n"
)
SHARE_PROBE = (
    "import importlib, sys\n"
    "def rss():\n"
    "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024\n"
    "before = rss()\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "print(rss() - before if sys.argv[1:] else rss())\n"
)
# where a serving process's memory goes: one fresh process importing and loading in this order
STEPS_PROBE = (
    "import importlib, sys\n"
    "from pathlib import Path\n"
    "def rss():\n"
    "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024\n"
    "last = rss()\n"
    "print(f'bare Python                          {last:6.0f} MiB')\n"
    "def step(name, fn):\n"
    "    global last\n"
    "    out = fn(); now = rss(); print(f'{name:<36} +{now - last:5.0f} MiB = {now:.0f}'); last = now\n"
    "    return out\n"
    "for label, mods in [('NumPy', ['numpy']), ('FastAPI, pydantic, starlette', ['fastapi']),\n"
    "                    ('uvicorn, uvloop, httptools', ['uvicorn', 'uvloop', 'httptools']), ('httpx', ['httpx']),\n"
    "                    ('aiohttp', ['aiohttp']), ('SQLAlchemy', ['sqlalchemy']), ('prometheus_client', ['prometheus_client']),\n"
    "                    ('the service\\'s other modules', ['llmroute.serving.app'])]:\n"
    "    step(label, lambda: [importlib.import_module(m) for m in mods])\n"
    "from llmroute.artifacts.loading import load_served\n"
    "from llmroute.config import Settings\n"
    "router, scorer = step('loading the router and scorer', lambda: load_served(Path(sys.argv[1]), Settings(home=Path(sys.argv[2])), True))\n"
    "step('first route()', lambda: router.route('Write a python function that reverses a list'))\n"
    "if scorer is not None:\n"
    "    step('first answer scored', lambda: scorer.score(['What is 2 + 2?'], ['4'], [router.models[0]]))\n"
    "step('200 more route()', lambda: [router.route(f'Question {i}: which gas do plants absorb?') for i in range(200)])\n"
)
# big packages a serving process may import, largest suspects first
PACKAGES = ("torch", "sentence_transformers", "sklearn", "pandas", "pyarrow", "scipy", "lightgbm", "dask", "mlflow",
            "numpy", "sqlalchemy", "fastapi", "uvicorn", "httpx", "aiohttp", "tiktoken", "tokenizers",
            "prometheus_client", "pydantic", "yaml", "uvloop", "httptools", "psutil", "threadpoolctl")


def vm_rss(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0 once it has gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    line = next((x for x in text.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    return float(line.split()[1]) / 1024


def share_mib(src: str, *packages: str) -> float | None:
    """RSS a fresh Python gains by importing ``packages`` (None when one is not installed); with none, the
    RSS of a bare Python."""
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", SHARE_PROBE, *packages], capture_output=True, text=True, env=env,
                         timeout=300, check=False)
    return float(out.stdout.strip()) if out.returncode == 0 else None


def one_run(name: str, src: str, router: Path, embedders: Path, bodies: list[bytes], concurrency: int,
            tmp: Path) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix=f"home-{name}-", dir=tmp))
    if embedders.is_dir():
        (home / "embedders").symlink_to(embedders.resolve(), target_is_directory=True)
    port = free_port()
    modules_out = home / "modules.json"
    env = {**os.environ, "PYTHONPATH": src, "LLMROUTE_HOME": str(home), "MODULES_OUT": str(modules_out),
           "LLMROUTE_SERVE_API_KEYS": "[]", "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{home / 'decisions.sqlite'}"}
    server = Server.start(name, [sys.executable, "-c", WRAPPER, "serve", "--model", str(router), "--port", str(port)],
                          port, env, ready_path="/ready", timeout_s=600)
    try:
        time.sleep(1.0)  # the first load's last allocations (the check server starts beside it)
        pid = server.proc.pid
        loaded = vm_rss(pid)
        loaded_children = sum(vm_rss(p) for p in process_tree(pid) if p != pid)
        res = run_level(server, "/route", bodies, concurrency, lambda status, body: status == 200 and b'"model"' in body)
        if res.errors:
            raise SystemExit(f"{name}: {res.errors} bad answers: {res.first_error}")
        after = vm_rss(pid)
        children = sum(vm_rss(p) for p in process_tree(pid) if p != pid)
    finally:
        # SIGINT: uvicorn shuts down and Python exits normally (atexit runs); after SIGTERM uvicorn re-raises it
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.stop()
    modules = json.loads(modules_out.read_text()) if modules_out.is_file() else []
    return {"loaded": loaded, "after": after, "children_loaded": loaded_children, "children": children,
            "cpu_ms": res.cpu_ms_per_request, "modules": modules}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help="NAME=SRC: a source tree to run (default: now=<this checkout>/src).")
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--home", type=Path, default=None,
                    help="Home whose embedders/ folder the router's embedder is in (default: $LLMROUTE_HOME or ~/.llmroute).")
    ap.add_argument("--logs", type=Path, default=ROOT / "data" / "routerbench" / "test.parquet", help="Prompts to route.")
    ap.add_argument("--requests", type=int, default=1000, help="POST /route requests per run.")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3, help="Fresh server processes per variant.")
    ap.add_argument("--no-shares", action="store_true", help="Skip the per-package shares.")
    ap.add_argument("--steps", action="store_true",
                    help="Only print where one process's memory goes, step by step (imports, loading, first route).")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variants) if args.variants else {"now": str(ROOT / "src")}
    for name, src in variants.items():
        if not (Path(src) / "llmroute").is_dir():
            raise SystemExit(f"{name}={src}: not a source folder with an llmroute package")
    home = args.home or Path(os.environ.get("LLMROUTE_HOME", "~/.llmroute")).expanduser()
    embedders = home / "embedders"
    if not embedders.is_dir():
        print(f"warning: {embedders} does not exist; each server builds its embedder first", file=sys.stderr)
    if args.steps:
        for name, src in variants.items():
            print(f"{name}: RSS step by step (one fresh process; router {args.router})", flush=True)
            subprocess.run([sys.executable, "-c", STEPS_PROBE, str(args.router), str(home)],
                           env={**os.environ, "PYTHONPATH": src}, check=True, timeout=900)
        return
    import pandas as pd

    prompts = pd.read_parquet(args.logs, columns=["prompt"])["prompt"].drop_duplicates().tolist()
    bodies = [json.dumps({"prompt": prompts[i % len(prompts)]}).encode() for i in range(args.requests)]
    print(f"router {args.router}; {args.requests} POST /route at concurrency {args.concurrency}; "
          f"{args.runs} runs per variant; load {os.getloadavg()[0]:.2f}", flush=True)

    runs: dict[str, list[dict[str, object]]] = {n: [] for n in variants}
    with tempfile.TemporaryDirectory(prefix="llmroute-serve-memory-") as tmp:
        for r in range(args.runs):
            order = list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
            for name, src in order:
                got = one_run(name, src, args.router, embedders, bodies, args.concurrency, Path(tmp))
                runs[name].append(got)
                print(f"run {r + 1} {name}: RSS {got['loaded']:.0f} MiB loaded, {got['after']:.0f} MiB after the "
                      f"requests (children {got['children_loaded']:.0f} / {got['children']:.0f} MiB); "
                      f"{got['cpu_ms']:.2f} ms CPU a request; load {os.getloadavg()[0]:.2f}", flush=True)

    print(f"\nmedian of {args.runs} fresh processes (MiB):")
    print(f"{'variant':<12} {'loaded':>8} {'after':>8} {'children':>9}")
    for name, got in runs.items():
        med = {k: statistics.median(float(g[k]) for g in got) for k in ("loaded", "after", "children")}  # type: ignore[arg-type]
        print(f"{name:<12} {med['loaded']:>8.0f} {med['after']:>8.0f} {med['children']:>9.0f}")

    stdlib = set(sys.stdlib_module_names)
    for name, got in runs.items():
        tops = sorted({m.split(".")[0] for m in got[-1]["modules"]} - stdlib)  # type: ignore[union-attr]
        tops = [t for t in tops if not t.startswith("_")]
        print(f"\n{name}: {len(got[-1]['modules'])} modules; third-party packages: {', '.join(tops)}")  # type: ignore[arg-type]
        if args.no_shares:
            continue
        src = variants[name]
        bare = share_mib(src)
        print(f"bare Python {bare if bare is not None else float('nan'):.0f} MiB; each package imported alone over it:")
        for pkg in PACKAGES:
            mib = share_mib(src, pkg)
            if mib is not None:
                print(f"  {pkg:<22} {mib:>6.0f} MiB  {'imported' if pkg in tops else 'not imported'}", flush=True)


if __name__ == "__main__":
    main()
