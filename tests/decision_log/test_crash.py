"""A hard crash (SIGKILL) loses at most the unflushed batch and the queue; a restarted writer appends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from llmroute.data.decision_log import DecisionLogStore, DecisionLogWriter
from tests.decision_log.helpers import decision

N, BATCH, MAX_QUEUE = 250, 100, 10_000

_CHILD = textwrap.dedent("""
    import sys, time
    from llmroute.data.decision_log import DecisionLogStore, DecisionLogWriter
    from tests.decision_log.helpers import decision

    store = DecisionLogStore(sys.argv[1])
    writer = DecisionLogWriter(store, batch_size={batch}, flush_interval_s=3600, max_queue={max_queue}).start()
    for i in range({n}):
        writer.submit(decision(i))
    print("submitted", flush=True)
    time.sleep(3600)
""").format(n=N, batch=BATCH, max_queue=MAX_QUEUE)


def _count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("select count(*) from decisions").fetchone()[0])
    finally:
        conn.close()


def test_sigkill_loses_at_most_the_unflushed_batch_and_restart_resumes(sqlite_url: str) -> None:
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, sqlite_url], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "submitted", proc.stderr.read() if proc.stderr else ""
        expected = N - N % BATCH  # full batches are written at once; the partial one waits an hour
        deadline = time.monotonic() + 20
        while (db.exists() and _count(db)) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL

    survived = _count(db)
    lost = N - survived
    assert lost <= BATCH + MAX_QUEUE  # the documented bound ...
    assert survived == expected and lost == N % BATCH  # ... and here exactly the partial batch

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()

    # restart: a new store + writer on the same file resumes appending; the survivors are intact
    with DecisionLogStore(sqlite_url) as store:
        with DecisionLogWriter(store, batch_size=BATCH) as writer:
            for i in range(N, N + 130):
                writer.submit(decision(i))
        rows = [r for b in store.iter_decisions() for r in b]
    assert len(rows) == survived + 130
    by_id = {r.decision_id: r for r in rows}
    for i in list(range(expected)) + list(range(N, N + 130)):
        assert by_id[f"d{i:06d}"] == decision(i)
    assert not any(f"d{i:06d}" in by_id for i in range(expected, N))
