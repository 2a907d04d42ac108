"""Fault injection on a hybrid deployment: does any ``local_only`` prompt reach an API endpoint?

    python benchmarks/hybrid_fault_injection.py --router ~/.llmroute/routers/<version> --requests 5000
    python benchmarks/hybrid_fault_injection.py            # trains a 200-prompt router under /tmp first

Set-up, all on 127.0.0.1: ``llmroute serve`` (a subprocess) with a user catalog (``--catalog``) marking two
RouterBench models ``local: true``; those two are served by ``llmroute replay-server`` with
``--local-failure-rate`` (HTTP 500/429) and ``--local-timeout-rate`` (held past the service's provider
timeout); every other (API) model by a replay server inside this script behind a *spy* that records the
user messages of every request it receives. Tenant ``secure`` has ``--tenant-policy secure=local_only``;
a third of the local_only requests come instead from tenant ``open`` asking ``data_policy: local_only``
themselves. Everything that can send a prompt somewhere is switched on: cascade escalation on failure,
timeout and low confidence (confidence bar 0.9, up to 4 attempts), provider retries, exploration
(share 0.3), an A/B experiment whose second arm always picks gpt-4, ensembles (best_of_n 3, majority
vote 3, median 3) and streaming, in rotation. The other half of the requests (tenant ``open``,
``prefer_local``, confidence 0) use the same faults to show the fallback to API.

local_only and open requests use disjoint prompts, so any local_only prompt among the spy's records is
a leak. Prints the counts by status and error type, the leaks (must be 0), how often the service's last
gate had to refuse a call (``llmroute_data_policy_blocked``; 0 means routing alone kept every prompt
local) and the open tenant's fallbacks to API. Exit status 1 on any leak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from breaker_p99 import start, stop, wait_ready
from serve_route_latency import free_port, train_small

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "data" / "routerbench" / "test.parquet"
LOCALS = ("mistralai/mistral-7b-chat", "meta/llama-2-70b-chat")


class Spy:
    """ASGI wrapper recording the user messages of every request that reaches the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prompts: list[str] = []
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages, body, more = [], b"", True
        while more:
            m = await receive()
            messages.append(m)
            body += m.get("body", b"")
            more = m.get("more_body", False)
        if body:
            self.requests += 1
            self.prompts.extend(str(msg.get("content")) for msg in json.loads(body).get("messages", []))

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def serve_in_thread(app: Any) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def user_catalog(folder: Path, path: Path) -> Path:
    """The router's catalog snapshot entries of LOCALS, marked local: true."""
    snap = yaml.safe_load((folder / "catalog_snapshot.yaml").read_text())
    entries = []
    for name in LOCALS:
        entry = {k: v for k, v in snap[name].items() if not (k.startswith("rate_limit") and v is None)}
        entries.append({**entry, "local": True, "provider": "self-hosted"})
    path.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    return path


async def run_load(url: str, jobs: list[tuple[bool, dict[str, Any]]], concurrency: int) -> list[tuple[bool, int, dict[str, Any], dict[str, str]]]:
    out: list[tuple[bool, int, dict[str, Any], dict[str, str]]] = []
    queue = list(reversed(jobs))
    t0, done = time.perf_counter(), 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while queue:
            secure, body = queue.pop()
            r = await client.post("/v1/chat/completions", json=body)
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
                data = {"llmroute": events[-1].get("llmroute", {})} if events else {}
            else:
                data = r.json()
            out.append((secure, r.status_code, data, dict(r.headers)))
            done += 1
            if done % 500 == 0:
                print(f"  {done}/{len(jobs)} requests, {time.perf_counter() - t0:.0f} s", flush=True)

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", type=Path, help="Saved router folder (default: train a small one).")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--local-failure-rate", type=float, default=0.2)
    ap.add_argument("--local-timeout-rate", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=1.0, help="Provider call timeout of the service, seconds.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-hybrid-bench-"))
    home = Path(os.environ["LLMROUTE_HOME"]) if args.router and os.environ.get("LLMROUTE_HOME") else tmp / "home"
    folder = args.router or train_small(home)
    env = {**os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_API_KEYS": "[]",
           "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{tmp / 'decisions.sqlite'}",
           "LLMROUTE_SERVE_EXPLORATION_SHARE": "0.3", "LLMROUTE_SERVE_CASCADE_MAX_ATTEMPTS": "4"}
    procs: list[Any] = []
    spy_server = None
    try:
        import pandas as pd

        from llmroute.serving.replay import create_replay_app

        logs = pd.read_parquet(LOGS)
        spy = Spy(create_replay_app(logs, unknown_prompt="most_common"))
        spy_url, spy_server = serve_in_thread(spy)
        local_port = free_port()
        procs.append(start(["replay-server", "--logs", str(LOGS), "--port", str(local_port), "--timeout-s", "600",
                            "--failure-rate", str(args.local_failure_rate), "--timeout-rate",
                            str(args.local_timeout_rate), "--seed", str(args.seed), "--unknown-prompt", "most_common"], env))
        wait_ready(procs[-1], f"http://127.0.0.1:{local_port}", "/v1/chat/completions")
        experiment = tmp / "experiment.yaml"
        experiment.write_text(yaml.safe_dump({
            "name": "hybrid-bench", "unit": "user",
            "arms": [{"name": "learned", "control": True, "weight": 1, "router": str(folder)},
                     {"name": "gpt4", "weight": 1, "always": "gpt-4-1106-preview"}],
        }))
        port = free_port()
        cmd = ["serve", "--model", str(folder), "--port", str(port), "--log-level", "warning",
               "--catalog", str(user_catalog(folder, tmp / "catalog.yaml")), "--tenant-policy", "secure=local_only",
               "--default-base-url", f"{spy_url}/v1", "--confidence", "0.9", "--timeout", str(args.timeout),
               "--retries", "1", "--experiment", str(experiment),
               *(x for m in LOCALS for x in ("--base-url", f"{m}=http://127.0.0.1:{local_port}/v1"))]
        procs.append(start(cmd, env))
        url = f"http://127.0.0.1:{port}"
        wait_ready(procs[-1], url, "/ready")

        prompts = logs["prompt"].drop_duplicates().tolist()
        rng = random.Random(args.seed)
        rng.shuffle(prompts)
        secret, open_ = prompts[: len(prompts) // 2], prompts[len(prompts) // 2:]
        kinds: list[dict[str, Any]] = [{}, {"best_of_n": 3}, {"majority_vote": 3},
                                       {"ensemble": {"kind": "median", "n": 3}}, {"stream": True}]
        jobs: list[tuple[bool, dict[str, Any]]] = []
        for i in range(args.requests):
            secure = i % 2 == 0
            extra = dict(kinds[(i // 2) % len(kinds)])
            stream = bool(extra.pop("stream", False))
            opts: dict[str, Any] = {"user": f"user-{rng.randrange(50)}", **extra}
            if secure:
                opts.update({"tenant": "secure"} if i % 3 else {"tenant": "open", "data_policy": "local_only"})
                text = secret[(i // 2) % len(secret)]
            else:
                opts.update({"tenant": "open", "data_policy": "prefer_local", "confidence": 0.0})
                text = open_[(i // 2) % len(open_)]
            jobs.append((secure, {"model": "llmroute", "messages": [{"role": "user", "content": text}],
                                  "stream": stream, "llmroute": opts}))
        print(f"router {folder}; {args.requests} chat requests ({sum(s for s, _ in jobs)} local_only), concurrency "
              f"{args.concurrency}; local models {', '.join(LOCALS)} with {args.local_failure_rate:.0%} failures and "
              f"{args.local_timeout_rate:.0%} timeouts (provider timeout {args.timeout:g} s); cpus {os.cpu_count()}; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        t0 = time.perf_counter()
        results = asyncio.run(run_load(url, jobs, args.concurrency))
        wall = time.perf_counter() - t0

        secret_set = set(secret)
        leaks = [p for p in spy.prompts if p in secret_set]
        statuses: Counter[str] = Counter()
        fallbacks = local_answers = 0
        failed_kinds: Counter[str] = Counter()  # the attempts of the requests that got no answer
        for secure, status, data, headers in results:
            kind = data.get("error", {}).get("type", "") if status != 200 else ""
            statuses[f"{'local_only' if secure else 'open'} {status}{' ' + kind if kind else ''}"] += 1
            if secure and status == 200:
                models = {a["model"] for a in data.get("llmroute", {}).get("attempts", [])} | {headers.get("x-llmroute-model")}
                local_answers += models <= set(LOCALS)
            if not secure and headers.get("x-llmroute-fallback") == "api":
                fallbacks += 1
            if status != 200:
                for a in data.get("llmroute", {}).get("attempts", []):
                    failed_kinds[f"{'local' if a['model'] in LOCALS else 'API'} {a['error_kind']}"] += 1
        metrics = httpx.get(f"{url}/metrics").text
        blocked = sum(float(v) for v in re.findall(r"^llmroute_data_policy_blocked_total\{[^}]*\} (\S+)$", metrics, re.M))
        print(f"done in {wall:.0f} s ({len(results) / wall:.1f} req/s); load {os.getloadavg()[0]:.2f}")
        for key in sorted(statuses):
            print(f"  {key}: {statuses[key]}")
        if failed_kinds:
            print(f"  attempts of the unanswered requests: {dict(sorted(failed_kinds.items()))}")
        n_secure = sum(1 for s, *_ in results if s)
        print(f"local_only requests answered with only local models called: {local_answers} of "
              f"{sum(1 for s, st, *_ in results if s and st == 200)} answered")
        print(f"API server (spy) received {spy.requests} requests; local_only prompts among them: {len(leaks)} "
              f"(of {n_secure} local_only requests)")
        print(f"calls refused by the last gate (llmroute_data_policy_blocked): {blocked:g}")
        print(f"open tenant (prefer_local) answers that fell back to an API model after a local failure: {fallbacks}")
        if leaks:
            sys.exit(1)
    finally:
        for p in procs:
            stop(p)
        if spy_server is not None:
            spy_server.should_exit = True
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
