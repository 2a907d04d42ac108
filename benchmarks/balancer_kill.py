"""kill -9 of a replica behind deploy/haproxy.cfg, many times over: which requests fail, and why.

    python benchmarks/balancer_kill.py --runs 10
    python benchmarks/balancer_kill.py --runs 10 --drop "option http-buffer-request"

Each run starts two stand-in replicas (``uvicorn --workers 2`` serving a tiny ASGI app with a
``/ready`` and a ``/route`` that hashes for about a millisecond) and HAProxy with the repo's
configuration (``--drop`` removes the config lines that start with the given text, to compare), sends
``--clients`` closed-loop keep-alive clients of POST /route through it (httpx, as the replica test),
kills the first replica's process group with SIGKILL after ``--warmup`` seconds and keeps the load
``--after`` seconds more. Per run and in total it prints the failed requests, split into those sent
before the replica's last process was gone and answered after the kill (in flight on it), after it
was gone (which HAProxy should have retried on the other replica) and before the kill, with the
client's error, and the requests HAProxy retried that
waited at least 0.5 s (its turn-around before a retry on the same server). The stand-in replicas
make a run take seconds instead of minutes (the real service: tests/deploy/test_replicas.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from closed_loop import free_port  # noqa: E402
from tests.processes import group_gone, system_command  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The stand-in replica (an ASGI app): GET /ready answers 200; POST /route hashes its body 2,000
    times (about a millisecond) and answers a small JSON object."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    digest = body
    if scope["path"] == "/route":
        for _ in range(2000):
            digest = hashlib.sha256(digest).digest()
    payload = json.dumps({"decision_id": digest.hex()[:16], "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _wait_ready(url: str, limit_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {limit_s} s")


def one_run(haproxy: str, cfg: Path, logdir: Path, clients: int, warmup: float, after: float) -> dict[str, Any]:
    import httpx

    replicas, ports = [], []
    for _ in range(2):
        port = free_port()
        ports.append(port)
        replicas.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "balancer_kill:app", "--app-dir", str(Path(__file__).parent),
             "--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    lb_port, stats_port = free_port(), free_port()
    env = {**os.environ, "LLMROUTE_LB_BIND": f"127.0.0.1:{lb_port}", "LLMROUTE_LB_STATS": f"127.0.0.1:{stats_port}",
           "LLMROUTE_REPLICA_1": f"127.0.0.1:{ports[0]}", "LLMROUTE_REPLICA_2": f"127.0.0.1:{ports[1]}"}
    log = logdir / "haproxy.log"
    with log.open("wb") as fh:
        lb = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                              start_new_session=True)
    calls: list[tuple[float, float, str | None]] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{lb_port}", timeout=30) as c:
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.post("/route", json={"prompt": f"client {k} request {i}"})
                    error = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__ + ": " + str(exc)[:80]
                with lock:
                    calls.append((t0, time.monotonic(), error))
                i += 1

    try:
        for port in ports:
            _wait_ready(f"http://127.0.0.1:{port}/ready")
        _wait_ready(f"http://127.0.0.1:{stats_port}/health")
        seen: set[str] = set()  # HAProxy names the replica that answered; start once it uses both
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            r = httpx.post(f"http://127.0.0.1:{lb_port}/route", json={"prompt": "warm-up"}, timeout=10)
            seen.add(r.headers.get("x-llmroute-replica", "") if r.status_code == 200 else "")
            seen.discard("")
        if len(seen) < 2:
            raise SystemExit(f"HAProxy did not send requests to both replicas within 60 s (only {seen})")
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        time.sleep(warmup)
        killed = time.monotonic()
        os.killpg(replicas[0].pid, signal.SIGKILL)
        gone = group_gone(replicas[0].pid, limit_s=60.0)
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join(timeout=40)
    finally:
        for proc in (lb, *replicas):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    failed = [(t0 - killed, t1 - killed, error) for t0, t1, error in calls if error is not None]
    waited = 0
    for line in log.read_text(errors="replace").splitlines():
        fields = line.split()
        if '"POST' in line and len(fields) > 4 and fields[4].count("/") == 4:
            tw = fields[4].split("/")[1]
            waited += tw.lstrip("-").isdigit() and int(tw) >= 500
    # in flight: sent before the replica's last process was gone and not answered before the kill
    in_flight = [f for f in failed if f[0] <= gone - killed and f[1] + 0.05 >= 0]
    return {"calls": len(calls), "gone_s": gone - killed, "in_flight": in_flight,
            "after": [f for f in failed if f[0] > gone - killed],
            "before": [f for f in failed if f[0] <= gone - killed and f not in in_flight], "waited": waited}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="kill rounds (each starts fresh replicas and HAProxy)")
    ap.add_argument("--config", type=Path, default=REPO / "deploy" / "haproxy.cfg", help="HAProxy configuration")
    ap.add_argument("--drop", action="append", default=[],
                    help="remove the config lines starting with this text (after indentation); repeatable")
    ap.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the kill")
    ap.add_argument("--after", type=float, default=3.0, help="seconds of load after the kill")
    args = ap.parse_args()
    haproxy = system_command("haproxy")
    if haproxy is None:
        raise SystemExit("haproxy is not installed (apt-get install -y haproxy)")
    work = Path(tempfile.mkdtemp(prefix="balancer-kill-"))
    cfg = work / "haproxy.cfg"
    lines = args.config.read_text().splitlines()
    kept = [ln for ln in lines if not any(ln.strip().startswith(d) for d in args.drop)]
    if args.drop and len(kept) == len(lines):
        raise SystemExit(f"--drop {args.drop}: no line of {args.config} starts with that")
    cfg.write_text("\n".join(kept) + "\n")
    print(f"{args.config}{' without ' + ', '.join(repr(d) for d in args.drop) if args.drop else ''}; "
          f"{args.runs} runs, {args.clients} clients; load average {os.getloadavg()[0]:.1f}", flush=True)
    totals = {"calls": 0, "in_flight": 0, "after": 0, "before": 0, "waited": 0, "runs_failed": 0}
    for run in range(args.runs):
        rundir = work / f"run{run}"
        rundir.mkdir()
        res = one_run(haproxy, cfg, rundir, args.clients, args.warmup, args.after)
        print(f"run {run + 1}: {res['calls']} requests, replica gone {res['gone_s']:.3f} s after the kill; failed: "
              f"{len(res['in_flight'])} in flight, {len(res['after'])} after it was gone, {len(res['before'])} "
              f"before the kill; {res['waited']} retried after waiting >= 0.5 s", flush=True)
        for sent, done, error in res["before"] + res["in_flight"] + res["after"]:
            print(f"    sent {sent:+.3f} s from the kill, answered {done:+.3f} s: {error}", flush=True)
        totals["calls"] += res["calls"]
        totals["in_flight"] += len(res["in_flight"])
        totals["after"] += len(res["after"])
        totals["before"] += len(res["before"])
        totals["waited"] += res["waited"]
        totals["runs_failed"] += bool(res["in_flight"] or res["after"] or res["before"])
    print(f"total: {totals['calls']} requests in {args.runs} runs; {totals['runs_failed']} runs with a failed request; "
          f"{totals['in_flight']} failed in flight, {totals['after']} after the replica was gone, "
          f"{totals['before']} before the kill; "
          f"{totals['waited']} retried after waiting >= 0.5 s; load average {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
