"""The durable decision-log spool end to end under ``llmroute serve --workers 2``: PostgreSQL is stopped
(``pg_ctl -m immediate``) for a while under load through both worker processes and started again;
afterwards every acknowledged decision (200 from /route) and feedback (202) is in the database exactly
once. Both workers share one spool directory (one segment each); the test checks that both journaled
records during the outage, so the load really went through both."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from llmroute.data.decision_log import DecisionLogStore, tables
from llmroute.data.decision_log.spool import SEGMENT_PREFIX, SEGMENT_SUFFIX
from tests.decision_log.conftest import _pg_bindir
from tests.processes import free_port, stop_process_group, system_command
from tests.serving.conftest import Trained

READY_SECONDS = 240
CLIENTS = 8
BEFORE_S, OUTAGE_S, AFTER_S = 3.0, 8.0, 3.0
PROMPTS = ["What is 2 + 2?", "Write a python function that reverses a list", "Name the capital of France.",
           "Summarise the plot of Hamlet in one sentence.", "Is 97 a prime number?"]


@contextlib.contextmanager
def _cluster() -> Iterator[tuple[str, object, object]]:
    """A PostgreSQL cluster of this test's own (so stopping it touches nothing else): (URL, stop, start)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="llmroute-pg-spool-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to run the server as")
        for p in (base, sock):
            os.chown(p, owner.pw_uid, owner.pw_gid)
        runuser = system_command("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser (util-linux) is not installed to run the server as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
    port = free_port()

    def ctl(*args: str) -> None:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), *args],
                       check=True, capture_output=True, timeout=60)

    def start() -> None:
        ctl("-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=off -c max_connections=60",
            "-w", "-t", "30", "start")

    def stop() -> None:
        ctl("-m", "immediate", "-w", "stop")

    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        start()
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True,
                                     connect_timeout=2) as conn:
                    conn.execute("CREATE DATABASE spool")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/spool", stop, start
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _segment_sizes(spool: Path) -> dict[str, int]:
    """Bytes journaled per writer process (its pid is in its segments' names)."""
    out: dict[str, int] = {}
    for f in spool.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        pid = f.name[len(SEGMENT_PREFIX):].split("-")[0]
        with contextlib.suppress(FileNotFoundError):
            out[pid] = out.get(pid, 0) + f.stat().st_size
    return out


@pytest.mark.slow
def test_two_workers_lose_nothing_acknowledged_across_a_database_outage(trained: Trained, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with _cluster() as (url, stop_db, start_db):
        DecisionLogStore(url).close()  # migrated once before both workers start
        port = free_port()
        env = {**os.environ, "LLMROUTE_HOME": str(trained.core.home), "LLMROUTE_SERVE_DECISION_LOG_URL": url,
               "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(spool), "LLMROUTE_SERVE_API_KEYS": "[]"}
        log = tmp_path / "serve.log"
        cmd = [sys.executable, "-m", "llmroute.cli", "serve", "--model", str(trained.folder), "--port", str(port),
               "--workers", "2", "--log-level", "warning"]
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        decisions: set[str] = set()
        feedback: set[str] = set()
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        try:
            deadline = time.monotonic() + READY_SECONDS
            ready_in_a_row = 0  # each probe is a new connection, taken by either worker: both must be up
            while ready_in_a_row < 24:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"not ready in {READY_SECONDS} s:\n{log.read_text()[-3000:]}"
                try:
                    ok = httpx.get(f"{base}/ready", timeout=2).status_code == 200
                except httpx.HTTPError:
                    ok = False
                ready_in_a_row = ready_in_a_row + 1 if ok else 0
                time.sleep(0.05 if ok else 0.5)

            done = threading.Event()

            def client(k: int) -> None:
                i = k
                while not done.is_set():
                    # a new connection per request: the kernel spreads them over both workers
                    with httpx.Client(timeout=30, headers={"Connection": "close"}) as c:
                        try:
                            r = c.post(f"{base}/route", json={"prompt": PROMPTS[i % len(PROMPTS)], "tenant": f"t{k}"})
                            key = f"route {r.status_code}"
                            if r.status_code == 200:
                                did = r.json()["decision_id"]
                                with lock:
                                    decisions.add(did)
                                if i % 3 == 0:
                                    f = c.post(f"{base}/feedback", json={"decision_id": did, "quality": 0.5})
                                    key += f", feedback {f.status_code}"
                                    if f.status_code == 202:
                                        with lock:
                                            feedback.add(f.json()["feedback_id"])
                        except httpx.HTTPError as exc:
                            key = type(exc).__name__
                    with lock:
                        statuses[key] = statuses.get(key, 0) + 1
                    i += CLIENTS

            threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
            for t in threads:
                t.start()
            try:
                time.sleep(BEFORE_S)
                stop_db()
                acked_before_outage = len(decisions)
                time.sleep(OUTAGE_S / 2)
                ready = httpx.get(f"{base}/ready", timeout=10)
                grown_from = _segment_sizes(spool)
                time.sleep(OUTAGE_S / 2)
                grown = {pid for pid, size in _segment_sizes(spool).items() if size > grown_from.get(pid, 0)}
                acked_in_outage = len(decisions) - acked_before_outage
                start_db()
                time.sleep(AFTER_S)
            finally:
                done.set()
                for t in threads:
                    t.join(60)
            assert "unavailable" in ready.text or ready.status_code == 503 or "degraded" in ready.text, ready.text
            assert len(grown) == 2, f"both workers should journal during the outage; grew: {grown}"
            assert acked_in_outage >= 10, statuses  # the service kept acknowledging while the database was down

            # wait until both workers have shipped their spools
            deadline = time.monotonic() + 180
            while True:
                with DecisionLogStore(url) as store, store.engine.connect() as conn:
                    stored_d = [r[0] for r in conn.execute(sa.select(tables.decisions.c.decision_id))]
                    stored_f = [r[0] for r in conn.execute(sa.select(tables.feedback.c.feedback_id))]
                if decisions <= set(stored_d) and feedback <= set(stored_f) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            stop_process_group(proc)
        print(f"acknowledged {len(decisions)} decisions ({acked_in_outage} during the outage) and {len(feedback)} "
              f"feedback; statuses {statuses}")
        assert not decisions - set(stored_d), f"{len(decisions - set(stored_d))} acknowledged decisions lost"
        assert not feedback - set(stored_f), f"{len(feedback - set(stored_f))} acknowledged feedback lost"
        assert len(stored_d) == len(set(stored_d)) and len(stored_f) == len(set(stored_f))  # each exactly once
        assert sum(v for k, v in statuses.items() if "500" in k) == 0, statuses
