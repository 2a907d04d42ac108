"""Two `llmroute serve --workers 2` replicas behind HAProxy (the repo's deploy/haproxy.cfg), sharing one
PostgreSQL decision log and one `mlflow server` registry, all real processes on 127.0.0.1:

- load through the balancer reaches both replicas;
- a promotion in the registry is served by every worker of both replicas within the poll interval + 2 s
  (each worker prepared the challenger ahead, serving.reloading; each one's timeline is printed);
- kill -9 of one replica (its whole process group) while the load runs: HAProxy's health checks take
  it out, no request fails except those in flight at the kill (sent before the replica's last process
  was gone: SIGKILL takes effect when each process next runs; HAProxy's retries save most of those),
  not even one sent in the moments before the health checks noticed (HAProxy retries it elsewhere);
- the decision log holds every acknowledged decision exactly once. The serving writer commits in
  batches (at most ``flush_interval_s`` = 0.5 s behind, see ``data/decision_log/writer.py``), so the
  killed replica may lose what it acknowledged in its last half second: that, and only that, is allowed
  to be missing.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from llmroute.cli import app
from llmroute.data.importers import read_logs, write_logs
from tests.decision_log.conftest import pg_server  # noqa: F401 - the session's PostgreSQL fixture
from tests.processes import free_port, group_gone, stop_process_group, system_command

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
HAPROXY = system_command("haproxy")
POLL_S = 1.0
READY_SECONDS = 180
# The goal: every replica serves a promotion within the poll interval + 2 s. Each of the four worker
# processes then downloads the version from the registry, loads it and swaps it in; on a machine with
# more runnable processes than cores that work is slowed in proportion, so the 2 s are scaled by the
# load average per core (1 on a machine that is not oversubscribed).
RELOAD_S = 2.0
FLUSH_WINDOW_S = 0.5 + 0.5  # the writer's flush interval plus slack for a batch being committed
# HAProxy's detection of a dead replica (deploy/haproxy.cfg: a check every 0.5 s, two failed checks
# 0.25 s apart take it out). A request the balancer sends to the dead replica in that window must be
# retried on the other one (option http-buffer-request, option redispatch 1): failures there are
# reported apart, and there must be none.
DETECT_S = 0.5 + 2 * 0.25

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install -y haproxy)"),
]


def _cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@dataclass
class Call:
    sent: float
    done: float
    ok: bool
    decision_id: str | None
    replica: str | None
    version: str | None
    error: str | None


def _start(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {READY_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in reversed(started):
        stop_process_group(p, timeout=20)


# one client for every /ready probe (a client per request spends tens of ms building its SSL context),
# with a new connection per request, so that the kernel hands the probes to every worker in turn
@functools.cache
def _probe() -> httpx.Client:
    return httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def _workers_serving(url: str, version: str | None, workers: int = 2, wait_s: float = READY_SECONDS,
                     prepared: str | None = None) -> bool:
    """True once ``workers`` distinct worker processes of the replica at ``url`` answered /ready with 200,
    their reload checks ready (and ``version``, when given; holding ``prepared`` prepared ahead, when
    given); tries for ``wait_s`` seconds (fails the test when that is > 0)."""
    deadline = time.monotonic() + wait_s
    while True:
        serving = set()
        for _ in range(8 * workers):
            r = _probe().get(f"{url}/ready")
            body = r.json()
            if (r.status_code == 200 and body["isolated_check"] == "ready" and version in (None, body["router_version"])
                    and prepared in (None, body.get("prepared_version"))):
                serving.add(body["worker_pid"])
            if len(serving) == workers:
                return True
        if time.monotonic() >= deadline:
            assert wait_s == 0, f"fewer than {workers} workers of {url} ready after {wait_s} s"
            return False
        time.sleep(0.5)


def _since(clock: str, wall: float) -> float:
    """Seconds from ``wall`` (``time.time()``) to ``clock`` (``HH:MM:SS.fff`` UTC, as the service logs it)."""
    t = datetime.strptime(clock, "%H:%M:%S.%f").replace(tzinfo=UTC)
    of_day = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    return (of_day - wall % 86400 + 43200) % 86400 - 43200


def _oversubscription() -> float:
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def _database(server: str) -> str:
    import uuid

    import psycopg

    name = f"replicas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def test_two_replicas_behind_haproxy(
    pg_server: str,  # noqa: F811
    procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LLMROUTE_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LLMROUTE_"))}
    clean_env["OMP_NUM_THREADS"] = "1"

    # the registry: a real mlflow server
    mlflow_port = free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    (tmp_path / "mlflow").mkdir()
    procs.append(_start(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "mlflow" / "artifacts"), "--host", "127.0.0.1",
         "--port", str(mlflow_port), "--workers", "1"],
        tmp_path / "mlflow.log", clean_env, cwd=tmp_path,
    ))
    _wait(f"{mlflow_url}/health", procs[-1], tmp_path / "mlflow.log", "mlflow server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)

    # two router versions: version 1 promoted to champion, version 2 waiting as challenger
    parts = {}
    for split, n in (("train", 100), ("test", 40)):
        df = read_logs(REPO / "data" / "routerbench" / f"{split}.parquet")
        ids = sorted(df["prompt_id"].unique())[:n]
        parts[split] = df[df["prompt_id"].isin(ids)].reset_index(drop=True)
        write_logs(parts[split], tmp_path / f"{split}.parquet")
    home = tmp_path / "trainer-home"
    _cli("train", "--logs", str(tmp_path / "train.parquet"), "--embedder", "minilm", "--home", str(home), "--no-scorer")
    _cli("promote", "--logs", str(tmp_path / "test.parquet"), "--home", str(home))
    _cli("train", "--logs", str(tmp_path / "train.parquet"), "--embedder", "minilm", "--home", str(home), "--no-scorer",
         "--seed", "1")

    # two replicas (own state folder each, as on two hosts), one decision log
    log_url = _database(pg_server)
    replicas = []
    for i in (1, 2):
        port = free_port()
        env = {**clean_env, "LLMROUTE_HOME": str(tmp_path / f"replica{i}"), "MLFLOW_TRACKING_URI": mlflow_url,
               "LLMROUTE_SERVE_DECISION_LOG_URL": log_url, "LLMROUTE_SERVE_API_KEYS": '["k1"]',
               "LLMROUTE_SERVE_ADMIN_API_KEYS": '["a1"]'}
        log = tmp_path / f"replica{i}.log"
        procs.append(_start(
            [sys.executable, "-m", "llmroute.cli", "serve", "--model", "models:/llmroute@champion", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2", "--reload-poll", str(POLL_S), "--log-level", "info"],
            log, env,
        ))
        replicas.append((procs[-1], f"http://127.0.0.1:{port}", log))
    for proc, url, log in replicas:
        _wait(f"{url}/ready", proc, log, "llmroute serve")
        # /ready answers per worker (and names it): wait until both workers answered ready
        _workers_serving(url, None)

    # HAProxy with the repo's config, addresses from the environment
    lb_port, stats_port = free_port(), free_port()
    lb_env = {**clean_env, "LLMROUTE_LB_BIND": f"127.0.0.1:{lb_port}", "LLMROUTE_LB_STATS": f"127.0.0.1:{stats_port}",
              "LLMROUTE_REPLICA_1": replicas[0][1].removeprefix("http://"),
              "LLMROUTE_REPLICA_2": replicas[1][1].removeprefix("http://")}
    check = subprocess.run([str(HAPROXY), "-c", "-f", str(HAPROXY_CFG)], env=lb_env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    procs.append(_start([str(HAPROXY), "-db", "-f", str(HAPROXY_CFG)], tmp_path / "haproxy.log", lb_env))
    lb = f"http://127.0.0.1:{lb_port}"
    _wait(f"http://127.0.0.1:{stats_port}/health", procs[-1], tmp_path / "haproxy.log", "haproxy")

    prompts = list(parts["test"].drop_duplicates("prompt_id")["prompt"].astype(str))
    calls: list[Call] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=lb, timeout=30, headers={"Authorization": "Bearer k1"}) as c:
            i = k
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.post("/route", json={"prompt": prompts[i % len(prompts)], "user": f"u{k}"})
                    body = r.json() if r.status_code == 200 else {}
                    call = Call(t0, time.monotonic(), r.status_code == 200, body.get("decision_id"),
                                r.headers.get("x-llmroute-replica"), body.get("router_version"),
                                None if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    call = Call(t0, time.monotonic(), False, None, None, None, repr(exc))
                with lock:
                    calls.append(call)
                i += 4

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        # load reaches both replicas
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len({c.replica for c in calls if c.ok}) < 2:
            time.sleep(0.2)
        assert {c.replica for c in calls if c.ok} == {"replica1", "replica2"}, calls[-5:]
        assert {c.version for c in calls if c.ok} == {"llmroute/1"}

        # the replicas prepare the challenger (version 2) ahead of its promotion (reload_prepare_alias):
        # wait until every worker holds it, as it would long before an operator promotes it
        t_prep = time.monotonic()
        for _, url, _ in replicas:
            _workers_serving(url, "llmroute/1", prepared="llmroute/2")
        prepared_after = time.monotonic() - t_prep

        # promotion: every worker of both replicas serves version 2 within the poll interval + 2 s, counted
        # from the moment the registry's alias points at version 2 (the promote command evaluates both
        # versions first, and tags the version after)
        promoting = threading.Thread(target=_cli, args=("promote", "--logs", str(tmp_path / "test.parquet"), "--home",
                                                          str(home), "--force", "--reason", "replica test"))
        promoting.start()
        registry = MlflowClient(tracking_uri=mlflow_url)
        while registry.get_model_version_by_alias("llmroute", "champion").version != "2":
            if not promoting.is_alive():
                assert registry.get_model_version_by_alias("llmroute", "champion").version == "2", "not promoted"
                break
            time.sleep(0.05)
        promoted, promoted_wall = time.monotonic(), time.time()
        seen = {}
        while len(seen) < 2 and time.monotonic() - promoted < 120:
            for _, url, _ in replicas:
                if url not in seen and _workers_serving(url, "llmroute/2", wait_s=0):
                    seen[url] = time.monotonic() - promoted
            time.sleep(0.05)
        promoting.join(timeout=120)
        allowed = POLL_S + RELOAD_S * _oversubscription()

        # kill -9 one replica (the uvicorn parent and both workers) under load
        time.sleep(1.0)
        killed_proc, killed_url, _ = replicas[0]
        killed_at = time.monotonic()
        os.killpg(killed_proc.pid, signal.SIGKILL)
        dead_at = group_gone(killed_proc.pid)  # SIGKILL takes effect when each process next runs
        time.sleep(6.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=40)
    after = [c for c in calls if c.sent > killed_at + 2.0]
    assert after and all(c.ok and c.replica == "replica2" for c in after), "the dead replica was not drained"
    failed = [c for c in calls if not c.ok]
    # in flight at the kill: sent before the replica's last process was gone, answered after the kill began
    in_flight = [c for c in failed if c.sent <= dead_at and c.done + 0.05 >= killed_at]
    # sent after it was gone but before the balancer could have taken it out of rotation
    detecting = [c for c in failed if c not in in_flight and killed_at <= c.sent <= dead_at + DETECT_S * _oversubscription()]
    outside = [c for c in failed if c not in in_flight and c not in detecting]

    def described(cs: list[Call]) -> str:
        return "; ".join(f"{c.error} (sent {c.sent - killed_at:+.3f} s from the kill, answered {c.done - killed_at:+.3f} s; "
                         f"the replica was gone at {dead_at - killed_at:+.3f} s)" for c in cs)

    # HAProxy's log line of every request that did not end well (termination state, retries, server)
    lb_errors = [line for line in (tmp_path / "haproxy.log").read_text(errors="replace").splitlines()
                 if '"POST /route' in line and " 200 " not in line]
    assert not detecting, ("requests sent to the dead replica before the balancer noticed failed: "
                           + described(detecting) + "\nHAProxy: " + "\n".join(lb_errors))
    assert not outside, "requests failed outside the kill: " + described(outside) + "\nHAProxy: " + "\n".join(lb_errors)
    assert len(in_flight) <= 4  # at most one per client

    # the decision log: stop the surviving replica cleanly (its writer flushes), then read
    stop_process_group(replicas[1][0], timeout=30)
    from llmroute.data.decision_log.store import DecisionLogStore

    store = DecisionLogStore(log_url, migrate=False)
    try:
        logged = [d.decision_id for batch in store.iter_decisions() for d in batch]
    finally:
        store.close()
    assert len(logged) == len(set(logged))
    logged_set = set(logged)
    acknowledged = [c for c in calls if c.ok]
    assert len({c.decision_id for c in acknowledged}) == len(acknowledged)
    missing = [c for c in acknowledged if c.decision_id not in logged_set]
    assert all(c.replica == "replica1" and c.done >= killed_at - FLUSH_WINDOW_S for c in missing), (
        f"{len(missing)} acknowledged decisions missing from the log, not all from the killed replica's last "
        f"{FLUSH_WINDOW_S} s: {[(c.replica, round(killed_at - c.done, 2)) for c in missing][:10]}"
    )
    assert len(acknowledged) - len(missing) > 50

    print(f"\nreplicas: {len(acknowledged)} acknowledged, {len(in_flight)} failed in flight at the kill, "
          f"{len(detecting)} failed in the balancer's detection window, "
          f"{len(missing)} missing from the log (killed replica's last {FLUSH_WINDOW_S} s); promotion seen after "
          f"{', '.join(f'{v:.1f}' for v in seen.values())} s (allowed {allowed:.1f} s, load {os.getloadavg()[0]:.1f}; "
          f"the unscaled goal of {POLL_S + RELOAD_S:.1f} s "
          f"{'met' if len(seen) == 2 and max(seen.values()) <= POLL_S + RELOAD_S else 'missed'})")
    # each worker's promotion, from its log line: when its poll saw the alias move and when it swapped
    for i, (_, _, log) in enumerate(replicas, 1):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("llmroute: serving router llmroute/2"):
                times = re.findall(r"saw it at (\d\d:\d\d:\d\d\.\d+), at (\d\d:\d\d:\d\d\.\d+)", line)
                how = "prepared ahead" if "prepared in advance" in line else "loaded after the promotion"
                if times:
                    saw, swapped = (_since(t, promoted_wall) for t in times[0])
                    gc = re.findall(r"heap (collected and frozen|frozen) in ([\d.]+) s", line)
                    print(f"  replica{i} worker: poll saw the promotion at +{saw:.2f} s, swapped at +{swapped:.2f} s "
                          f"({how}; then the heap {gc[0][0] if gc else '?'} in {gc[0][1] if gc else '?'} s)")
            elif line.startswith("llmroute: prepared llmroute/2 ahead"):
                print(f"  replica{i} worker: {line.removeprefix('llmroute: ')[:160]}")
    print(f"  every worker had version 2 prepared {prepared_after:.1f} s after the load reached both replicas")
    # the promotion (checked last, so that a slow reload on a busy machine does not hide the rest)
    assert len(seen) == 2, f"not every replica serves version 2 after 120 s: {seen}"
    assert max(seen.values()) <= allowed, (
        f"promotion seen after {seen} s (poll {POLL_S} s + {RELOAD_S} s x oversubscription allowed: {allowed:.1f} s)"
    )
