"""p99 of ``POST /v1/chat/completions`` with one provider hard down: healthy vs breaker open vs no breaker.

    python benchmarks/breaker_p99.py --router ~/.llmroute/routers/<version>
    python benchmarks/breaker_p99.py            # trains a 200-prompt router under /tmp first

Three ``llmroute serve`` processes on 127.0.0.1 share one router and answer from ``llmroute replay-server``
processes (RouterBench test logs, ``--latency-ms`` per answer): *healthy* (no faults), *breaker* (the
model the router picks most often hangs on every call -- a provider hard down -- default circuit
breaker) and *no breaker* (the same outage, breaker effectively off: every request routed to the
dead model waits ``--timeout`` seconds before the cascade escalates, as before breakers existed).
Cascade confidence 0, so a healthy request makes one call.

The breaker service first gets requests until its breaker has opened (``GET /models``); then healthy
and breaker are measured in rounds, each made of ``--chunks`` alternating chunks of the prompts (closed
loop, ``--concurrency`` clients on keep-alive connections, the same prompts in the same order), so both
see the same machine load; the no-breaker
service is measured once, with fewer requests (each routed to the dead model takes the timeout). The
breaker's half-open probes (one call every cooldown, 30 s by default) are part of the measured traffic.

Prints per phase: requests, p50, p99, max, errors, mean attempts, and p99(breaker) / p99(healthy) per
round and over all rounds pooled.
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
from collections import Counter
from pathlib import Path

import httpx

from serve_route_latency import LAUNCH, Connection, free_port, train_small

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "data" / "routerbench" / "test.parquet"


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen[bytes], url: str, path: str, timeout: float = 240.0) -> None:
    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code in (200, 404, 405):
                return
        except httpx.TransportError:
            pass
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{url} not ready after {timeout:.0f} s")
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


ERRORS: Counter[str] = Counter()  # "status: error type" of every failed answer


async def closed_loop(port: int, bodies: list[bytes], concurrency: int) -> tuple[list[float], int, list[int]]:
    """(latencies in ms, errors, attempts per answer) of ``bodies`` sent by ``concurrency`` clients."""
    latencies: list[float] = []
    attempts: list[int] = []
    errors = 0
    queue = list(reversed(bodies))
    conns = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal errors
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            status, answer = await conn.post(b"/v1/chat/completions", body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors += 1
                try:
                    err = json.loads(answer)["error"]
                    ERRORS[f"{status} {err.get('type')}: {str(err.get('message'))[:160]}"] += 1
                except (ValueError, KeyError, TypeError):
                    ERRORS[f"{status} {answer[:160]!r}"] += 1
                continue
            attempts.append(len(json.loads(answer)["llmroute"]["attempts"]))

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        await c.close()
    return latencies, errors, attempts


def report(name: str, lat: list[float], errors: int, attempts: list[int]) -> float:
    q = statistics.quantiles(lat, n=100)
    print(f"  {name:<11} {len(lat):>5} requests  p50 {q[49]:8.1f} ms  p99 {q[98]:8.1f} ms  max {max(lat):8.1f} ms  "
          f"errors {errors}  mean attempts {statistics.fmean(attempts) if attempts else 0:.2f}  "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    return q[98]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", type=Path, help="Saved router folder (default: train a small one).")
    ap.add_argument("--requests", type=int, default=600, help="Requests per healthy / breaker round.")
    ap.add_argument("--no-breaker-requests", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=6, help="Alternating healthy / breaker chunks per round.")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency-ms", type=float, default=20.0, help="Replay server latency of every answer.")
    ap.add_argument("--timeout", type=float, default=2.0, help="Provider call timeout of the services, seconds.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-breaker-bench-"))
    home = Path(os.environ["LLMROUTE_HOME"]) if args.router and os.environ.get("LLMROUTE_HOME") else tmp / "home"
    folder = args.router or train_small(home)
    env = {**os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_API_KEYS": "[]",
           "LLMROUTE_SERVE_DECISION_LOG_URL": "off"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        import pandas as pd

        texts = pd.read_parquet(LOGS, columns=["prompt"])["prompt"].drop_duplicates().tolist()[: args.requests]
        bodies = [json.dumps({"model": "llmroute", "messages": [{"role": "user", "content": t}]}).encode()
                  for t in texts]
        healthy_rep, down_rep = free_port(), free_port()
        replay = ["replay-server", "--logs", str(LOGS), "--latency-ms", str(args.latency_ms), "--timeout-s", "600",
                  "--unknown-prompt", "most_common"]
        procs.append(start([*replay, "--port", str(healthy_rep)], env))
        wait_ready(procs[-1], f"http://127.0.0.1:{healthy_rep}", "/v1/chat/completions")

        def serve(port: int, replay_port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
            cmd = ["serve", "--model", str(folder), "--port", str(port), "--log-level", "warning", "--confidence", "0",
                   "--timeout", str(args.timeout), "--default-base-url", f"http://127.0.0.1:{replay_port}/v1"]
            return start(cmd, {**env, **extra_env})

        ports = {"healthy": free_port(), "breaker": free_port(), "no breaker": free_port()}
        procs.append(serve(ports["healthy"], healthy_rep, {}))
        wait_ready(procs[-1], f"http://127.0.0.1:{ports['healthy']}", "/ready")
        # the model the router picks most often goes down
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['healthy']}", timeout=30) as c:
            picks = Counter(c.post("/route", json={"prompt": t}).json()["model"] for t in texts)
        down, n_down = picks.most_common(1)[0]
        print(f"router {folder}; provider down: {down} (the router's pick for {n_down} of {len(texts)} prompts); "
              f"provider timeout {args.timeout:g} s; replay latency {args.latency_ms:g} ms; concurrency "
              f"{args.concurrency}; cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f}", flush=True)
        procs.append(start([*replay, "--port", str(down_rep), "--timeout-model", f"{down}=1.0"], env))
        wait_ready(procs[-1], f"http://127.0.0.1:{down_rep}", "/v1/chat/completions")
        procs.append(serve(ports["breaker"], down_rep, {}))
        off = {"LLMROUTE_SERVE_BREAKER_FAILURE_THRESHOLD": "1000000000", "LLMROUTE_SERVE_BREAKER_MIN_CALLS": "1000000000"}
        procs.append(serve(ports["no breaker"], down_rep, off))
        for name in ("breaker", "no breaker"):
            wait_ready(procs[-1 if name == "no breaker" else -2], f"http://127.0.0.1:{ports[name]}", "/ready")

        asyncio.run(closed_loop(ports["healthy"], bodies[:40], 4))  # warm-up
        t0 = time.perf_counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['breaker']}", timeout=30) as c:
            sent = 0
            while True:
                asyncio.run(closed_loop(ports["breaker"], bodies[sent % len(bodies):][:8], 4))
                sent += 8
                health = {m["name"]: m["health"] for m in c.get("/models").json()["models"]}
                if health[down]["breaker"]["state"] == "open":
                    break
                if time.perf_counter() - t0 > 120:
                    raise SystemExit(f"the breaker did not open within 120 s: {health[down]}")
        print(f"breaker open after {sent} requests, {time.perf_counter() - t0:.1f} s "
              f"({health[down]['breaker'].get('opened_because')})", flush=True)

        ratios = []
        pooled: dict[str, tuple[list[float], int, list[int]]] = {"healthy": ([], 0, []), "breaker": ([], 0, [])}
        chunk = max(1, len(bodies) // args.chunks)
        for r in range(args.rounds):
            print(f"round {r + 1} ({args.chunks} alternating chunks of {chunk} requests per service):")
            runs: dict[str, tuple[list[float], int, list[int]]] = {"healthy": ([], 0, []), "breaker": ([], 0, [])}
            for k in range(0, len(bodies), chunk):
                for name in ("healthy", "breaker") if (k // chunk) % 2 == 0 else ("breaker", "healthy"):
                    lat, err, att = asyncio.run(closed_loop(ports[name], bodies[k:k + chunk], args.concurrency))
                    old_lat, old_err, old_att = runs[name]
                    runs[name] = (old_lat + lat, old_err + err, old_att + att)
            for name, (lat, err, att) in runs.items():
                pooled[name] = (pooled[name][0] + lat, pooled[name][1] + err, pooled[name][2] + att)
            p_h = report("healthy", *runs["healthy"])
            p_b = report("breaker", *runs["breaker"])
            ratios.append(p_b / p_h)
            print(f"  p99 breaker / healthy = {p_b / p_h:.2f}", flush=True)
        print(f"all {args.rounds} rounds pooled:")
        p_h, p_b = report("healthy", *pooled["healthy"]), report("breaker", *pooled["breaker"])
        print(f"  p99 breaker / healthy = {p_b / p_h:.2f}")
        print("no breaker (the same outage, every request routed to the dead model waits for the timeout):")
        report("no breaker", *asyncio.run(
            closed_loop(ports["no breaker"], bodies[: args.no_breaker_requests], args.concurrency)))
        print(f"p99 ratio breaker / healthy per round: {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(goal <= 1.5: met in {sum(x <= 1.5 for x in ratios)} of {len(ratios)} rounds)")
        for what, n in ERRORS.most_common():
            print(f"  failed answers: {n} x {what}")
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
