"""Where a proxied chat request's wall time and event-loop CPU go, stage by stage, in ``llmroute serve``.

    python benchmarks/proxy_stages.py --router FOLDER
    python benchmarks/proxy_stages.py --router FOLDER before=OLD/src now=src --rounds 3 --requests 500

Each variant (``NAME=SRC[,VAR=VALUE...]``, as in ``benchmarks/serve_ab.py``; default ``now=src``) is a
``llmroute serve`` with one attempt and no answer scorer (``proxy_vs_litellm.py``'s ``llmroute-1``) in
front of one ``llmroute replay-server``, with a SQLite decision log. Timers are loaded into the server
process for the measurement only (wrappers around the handler's functions, installed before the app is
built; the service's code is not changed): per chat request,

- ``total``: the app's ASGI call, from the request's first byte handed to the app to the last byte sent;
- ``routing``: the budget check and routing on the compute pool, seen from the event loop, and inside
  it ``in thread`` (wall and CPU of the work on the pool thread) and the hand-offs ``hop to`` (the loop
  submits until the thread starts) and ``hop back`` (the thread ends until the loop resumes);
- ``provider``: the provider call through the dispatcher (the replay server's own time included);
- ``charge``: booking the cost in the budget ledger (the handler waits for it before answering);
- ``rest``: total minus routing, provider and charge (parsing, logging the decision, the answer, the
  middleware: all on the event loop);
- ``loop CPU``: the event-loop thread's CPU during the request (at concurrency 1 nothing else runs on it).

Prints the median of each stage per variant and round, and server CPU per request (the process's user +
system time, all threads) with the load average. Variants take turns, so all see the same machine load.
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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import LAUNCH, ROOT, Server, answered_prompts, free_port, run_level, variant

# loaded into the server before the command line runs: wraps the functions each stage runs through and answers
# GET /__stages with the medians so far (then starts over)
TIMERS = r'''
import statistics as _st, time as _time
import llmroute.serving.app as _appmod
import llmroute.serving.routes.chat as _chat
import llmroute.serving.budget_control as _bc
import llmroute.serving.dispatch as _dispatch
import llmroute.serving.ledger_writer as _lw
_T = {}
def _add(k, v): _T.setdefault(k, []).append(v * 1000.0)
_create = _appmod.create_app
def _create_app(*a, **k):
    app = _create(*a, **k)
    async def timed(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/__stages":
            body = _json.dumps({k: [_st.median(v), len(v)] for k, v in _T.items()}).encode()
            _T.clear()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            return await app(scope, receive, send)
        t0, c0 = _time.perf_counter(), _time.thread_time()
        await app(scope, receive, send)
        _add("total", _time.perf_counter() - t0)
        _add("loop CPU", _time.thread_time() - c0)
    return timed
import json as _json
_appmod.create_app = _create_app
_run_cpu = _chat.run_cpu
async def _timed_run_cpu(services, fn, *a):
    if fn is not _bc.route_with_budgets:
        return await _run_cpu(services, fn, *a)
    box = {}
    def inner(*aa):
        box["t1"], c1 = _time.perf_counter(), _time.thread_time()
        try:
            return fn(*aa)
        finally:
            box["t2"], box["cpu"] = _time.perf_counter(), _time.thread_time() - c1
    t0 = _time.perf_counter()
    out = await _run_cpu(services, inner, *a)
    t3 = _time.perf_counter()
    _add("routing", t3 - t0); _add("in thread", box["t2"] - box["t1"]); _add("in thread CPU", box["cpu"])
    _add("hop to", box["t1"] - t0); _add("hop back", t3 - box["t2"])
    return out
_chat.run_cpu = _timed_run_cpu
_call = _dispatch.Dispatcher.call
async def _timed_call(self, model):
    t0 = _time.perf_counter()
    try:
        return await _call(self, model)
    finally:
        _add("provider", _time.perf_counter() - t0)
_dispatch.Dispatcher.call = _timed_call
_book = _lw.ChargeWriter.book
async def _timed_book(self, charge):
    t0 = _time.perf_counter()
    try:
        return await _book(self, charge)
    finally:
        _add("charge", _time.perf_counter() - t0)
_lw.ChargeWriter.book = _timed_book
'''

STAGES = ("total", "routing", "in thread", "in thread CPU", "hop to", "hop back", "provider", "charge", "rest",
          "loop CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", default=[f"now={ROOT / 'src'}"], help="NAME=SRC[,VAR=VALUE...]")
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--logs", type=Path, default=ROOT / "data" / "routerbench" / "test.parquet")
    ap.add_argument("--model", default="gpt-3.5-turbo-1106", help="Prompts this model answered in the logs are sent.")
    ap.add_argument("--requests", type=int, default=500, help="Requests per variant, level and round.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="1", help="Concurrency levels (the stages add up at 1).")
    args = ap.parse_args()
    variants = [variant(v) for v in args.variants]
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-proxy-stages-"))
    home = os.environ.get("LLMROUTE_HOME") or str(tmp / "home")
    models = json.loads((args.router / "router.json").read_text())["models"]
    prompts = answered_prompts(args.logs, args.model)
    bodies = [json.dumps({"model": "llmroute", "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]})
              .encode() for i in range(args.requests)]
    servers: list[Server] = []
    try:
        port = free_port()
        env = {**os.environ, "LLMROUTE_HOME": home}
        replay = Server.start(
            "replay", [sys.executable, "-c", LAUNCH, "replay-server", "--logs", str(args.logs), "--port", str(port),
                       "--unknown-prompt", "most_common"], port, env, ready_path="/v1/models")
        servers.append(replay)
        for name, src, extra in variants:
            p = free_port()
            servers.append(Server.start(
                name, [sys.executable, "-c", TIMERS + LAUNCH, "serve", "--model", str(args.router), "--port", str(p),
                       "--log-level", "warning"], p,
                {**env, "PYTHONPATH": str(src), "LLMROUTE_SERVE_API_KEYS": "[]",
                 "LLMROUTE_SERVE_PROVIDER_BASE_URLS": json.dumps(dict.fromkeys(models, f"http://127.0.0.1:{port}/v1")),
                 "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{tmp / f'decisions-{name}.sqlite'}",
                 "LLMROUTE_SERVE_CASCADE_MAX_ATTEMPTS": "1", "LLMROUTE_SERVE_USE_SCORER": "false", **extra},
                ready_path="/ready"))

        def ok(status: int, body: bytes) -> bool:
            return status == 200 and b'"choices"' in body

        proxies = servers[1:]
        for s in proxies:  # warm-up, then forget its timings
            run_level(s, "/v1/chat/completions", bodies[:100], 4, ok)
            httpx.get(s.url + "/__stages", timeout=10)
        print(f"{len(bodies)} chat requests per variant, level and round; load average {os.getloadavg()[0]:.2f}")
        per: dict[tuple[str, int], list[dict[str, float]]] = {}
        for r in range(args.rounds):
            for c in levels:
                for s in proxies if (r + c) % 2 == 0 else proxies[::-1]:
                    res = run_level(s, "/v1/chat/completions", bodies, c, ok)
                    if res.errors:
                        raise SystemExit(f"{s.name}: {res.errors} bad answers at concurrency {c}: {res.first_error}")
                    got = {k: v[0] for k, v in httpx.get(s.url + "/__stages", timeout=10).json().items()}
                    got["rest"] = got["total"] - got["routing"] - got["provider"] - got.get("charge", 0.0)
                    got["server CPU/request"] = res.cpu_ms_per_request
                    got["p50"] = res.quantile(50)
                    per.setdefault((s.name, c), []).append(got)
                    print(f"round {r + 1} c={c} {s.name:>8}: p50 {res.quantile(50):.2f} ms, server CPU "
                          f"{res.cpu_ms_per_request:.2f} ms/request; " + ", ".join(
                              f"{k} {got[k]:.3f}" for k in STAGES if k in got) + f" ms; load {os.getloadavg()[0]:.2f}",
                          flush=True)
        print("\nmedian over rounds of each round's median (ms):")
        keys = ("p50", *STAGES, "server CPU/request")
        print(f"{'':>12} " + " ".join(f"{k:>13}" for k in keys))
        for (name, c), rows in per.items():
            print(f"{name + f' c={c}':>12} " + " ".join(
                f"{statistics.median(row[k] for row in rows):>13.3f}" if all(k in row for row in rows) else f"{'-':>13}"
                for k in keys))
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
