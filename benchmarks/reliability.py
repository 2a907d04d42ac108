"""The reliability suite's long runs: what the service loses, and whether it stays up, when things go wrong.

Each scenario runs the real service (``llmroute serve`` in a subprocess on 127.0.0.1) under load and
prints its numbers; ``all`` runs them in turn. The shorter versions of the same cases are tests
(``tests/decision_log/test_spool.py``, ``tests/serving/test_reload_transaction.py``,
``tests/serving/test_input_bounds.py``, ``tests/serving/test_fuzz.py``).

    python benchmarks/reliability.py all --router FOLDER      # FOLDER: a saved router (else a small one is trained)
    python benchmarks/reliability.py pg-outage --outage 30    # PostgreSQL stopped mid-load (throwaway cluster)
    python benchmarks/reliability.py full-disk --hold 90      # the spool's and SQLite's disk full (tmpfs; root)
    python benchmarks/reliability.py kill9                    # kill -9 under load, then a restart replays the spool
    python benchmarks/reliability.py corrupt                  # /admin/reload of every damaged router folder
    python benchmarks/reliability.py fuzz --cases 5000        # schemathesis, positive and negative cases
    python benchmarks/reliability.py headers                  # 50 MB header and slow-loris clients vs /health
    python benchmarks/reliability.py long-prompt              # a 999 KB prompt: its latency, others' p99
    python benchmarks/reliability.py long-prompt --long-chars 400000   # one that fits a window: routed, logged

"Acknowledged" means the client got 200 (``/route``, with a decision id) or 202 (``/feedback``);
"lost" means acknowledged but not in the database after the service drained (503s are not
acknowledged: the client was told to retry). Numbers depend on the machine and its load: the
script prints the load average next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from serve_route_latency import LAUNCH, Connection, free_port, prompts  # noqa: E402


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def train_small(home: Path) -> Path:
    """A router on the first 200 RouterBench training prompts with the default static embedder."""
    from llmroute.config import Settings
    from llmroute.data.importers import read_logs, write_logs
    from llmroute.training.train import TrainConfig, train_router

    df = read_logs(ROOT / "data" / "routerbench" / "train.parquet")
    ids = sorted(df["prompt_id"].unique())[:200]
    write_logs(df[df["prompt_id"].isin(ids)], home / "logs.parquet")
    _, folder = train_router(home / "logs.parquet", Settings(home=home), TrainConfig(embedder="minilm-static"), out_dir=home / "router")
    return folder


class Server:
    """``llmroute serve`` as a subprocess with the given environment; auth off unless keys are given."""

    def __init__(self, folder: Path, home: Path, work: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_API_KEYS": "[]",
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]), **env}
        self.cmd = [sys.executable, "-c", LAUNCH, "serve", "--model", str(folder), "--port", str(self.port),
                    "--log-level", "warning", *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / f"server-{self.port}.log"

    def start(self, timeout: float = 600) -> Server:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("ab"), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise SystemExit(f"server not ready in {timeout} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))

    def drain(self, timeout: float = 600) -> bool:
        """Wait until the decision log has written everything accepted (pending 0)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, StopIteration):
                if self.metric("llmroute_decision_log_pending") == 0 and self.metric("llmroute_decision_log_spool_bytes") == 0:
                    return True
            time.sleep(0.5)
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@dataclass
class Acks:
    decisions: dict[str, float] = field(default_factory=dict)  # decision id -> when the 200 arrived
    feedback: dict[str, float] = field(default_factory=dict)  # feedback id -> when the 202 arrived
    statuses: dict[str, int] = field(default_factory=dict)
    degraded_seen: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1


async def _post(conn: Connection, path: bytes, body: bytes) -> tuple[int, bytes, bool]:
    """Like ``Connection.post``, and whether the answer carried ``X-LLMRoute-Logging: degraded``."""
    conn.writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (path, len(body), body))
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = next(int(v) for n, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                  if n.strip().lower() == b"content-length")
    return status, await conn.reader.readexactly(length), b"x-llmroute-logging: degraded" in head.lower()


async def run_load(port: int, seconds: float, concurrency: int = 4, feedback_every: int = 3,
                   stop: threading.Event | None = None) -> Acks:
    """Closed loop: each client routes a prompt and sends feedback for every ``feedback_every``-th decision."""
    acks = Acks()
    bodies = [json.dumps({"prompt": p}).encode() for p in prompts(500)]
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        conn: Connection | None = None
        i = k
        while time.monotonic() < end and not (stop and stop.is_set()):
            try:
                if conn is None:
                    conn = await Connection.open("127.0.0.1", port)
                t0 = time.perf_counter()
                status, answer, degraded = await _post(conn, b"/route", bodies[i % len(bodies)])
                acks.latencies_ms.append((time.perf_counter() - t0) * 1000)
                acks.count(f"route {status}")
                acks.degraded_seen += degraded
                if status == 200:
                    did = json.loads(answer)["decision_id"]
                    acks.decisions[did] = time.time()
                    if i % feedback_every == 0:
                        fb = json.dumps({"decision_id": did, "quality": 0.5}).encode()
                        status, answer, degraded = await _post(conn, b"/feedback", fb)
                        acks.count(f"feedback {status}")
                        if status == 202:
                            acks.feedback[json.loads(answer)["feedback_id"]] = time.time()
                elif status == 503:
                    await asyncio.sleep(0.05)
                i += concurrency
            except (OSError, asyncio.IncompleteReadError, ValueError):
                acks.count("connection error")
                conn = None
                await asyncio.sleep(0.1)

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return acks


def stored_ids(url: str) -> tuple[set[str], set[str]]:
    import sqlalchemy as sa

    from llmroute.data.decision_log import DecisionLogStore, tables

    with DecisionLogStore(url) as store, store.engine.connect() as conn:
        decisions = {r[0] for r in conn.execute(sa.select(tables.decisions.c.decision_id))}
        feedback = {r[0] for r in conn.execute(sa.select(tables.feedback.c.feedback_id))}
    return decisions, feedback


def report(name: str, acks: Acks, url: str, extra: str = "") -> dict[str, Any]:
    decisions, feedback = stored_ids(url)
    lost_d = set(acks.decisions) - decisions
    lost_f = set(acks.feedback) - feedback
    out = {"scenario": name, "acknowledged_decisions": len(acks.decisions), "lost_decisions": len(lost_d),
           "acknowledged_feedback": len(acks.feedback), "lost_feedback": len(lost_f),
           "responses_with_degraded_header": acks.degraded_seen, "statuses": dict(sorted(acks.statuses.items()))}
    print(json.dumps(out), extra, f"({load_average()})", flush=True)
    return out


# -- scenarios ------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_cluster() -> Iterator[tuple[str, Any, Any]]:
    """A throwaway PostgreSQL cluster run as the ``postgres`` user in a world-traversable temporary
    directory of its own; yields (URL of a fresh database, stop, start)."""
    import glob
    import pwd

    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="llmroute-pg-"))
    base.chmod(0o755)
    data, sock = base / "pgdata", base / "pgsock"
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chown(sock, owner.pw_uid, owner.pw_gid)
    port = free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data)],
                   check=True, stdout=subprocess.DEVNULL)
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=off"

    def ctl(*a: str) -> None:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), *a],
                       check=True, stdout=subprocess.DEVNULL)

    def start() -> None:
        ctl("-o", opts, "-w", "start")

    def stop() -> None:
        ctl("-m", "immediate", "stop")

    start()
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE rel")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/rel", stop, start
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def pg_outage(folder: Path, home: Path, work: Path, outage: float, before: float = 5.0,
              after: float = 10.0) -> dict[str, Any]:
    with postgres_cluster() as (url, stop_pg, start_pg):
        server = Server(folder, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": url,
                                             "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(work / "spool-pg")}).start()
        ready_during: list[str] = []

        def outage_script() -> None:
            time.sleep(before)
            stop_pg()
            time.sleep(outage / 2)
            with contextlib.suppress(httpx.HTTPError):
                ready_during.append(httpx.get(f"{server.url}/ready", timeout=5).json().get("decision_log", "?"))
            time.sleep(outage / 2)
            start_pg()

        t = threading.Thread(target=outage_script)
        t.start()
        acks = asyncio.run(run_load(server.port, before + outage + after))
        t.join()
        drained = server.drain()
        server.stop()
        return report("pg-outage", acks, url,
                      f"outage {outage:g} s, drained {drained}, /ready during the outage: {ready_during}")


def full_disk(folder: Path, home: Path, work: Path, hold: float, before: float = 5.0, after: float = 10.0) -> dict[str, Any] | None:
    disk = work / "smalldisk"
    disk.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True).returncode:
        print("full-disk: not measured here (mounting a tmpfs is not permitted); the simulated full disk is "
              "tests/decision_log/test_spool.py::test_full_disk_holds_records_in_memory_and_refuses_durable_ones")
        return None
    url = f"sqlite:///{disk / 'decisions.sqlite'}"
    try:
        server = Server(folder, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": url,
                                             "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(disk / "spool")}).start()
        states: list[str] = []

        def fill() -> None:
            time.sleep(before)
            with (disk / "filler").open("wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
            time.sleep(hold / 2)
            with contextlib.suppress(httpx.HTTPError):
                states.append(httpx.get(f"{server.url}/ready", timeout=5).json().get("decision_log", "?"))
            time.sleep(hold / 2)
            (disk / "filler").unlink()

        t = threading.Thread(target=fill)
        t.start()
        acks = asyncio.run(run_load(server.port, before + hold + after))
        t.join()
        drained = server.drain()
        server.stop()
        return report("full-disk", acks, url, f"disk full for {hold:g} s, drained {drained}, /ready while full: {states}")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def kill9(folder: Path, home: Path, work: Path, seconds: float = 10.0) -> dict[str, Any]:
    url = f"sqlite:///{work / 'kill9.sqlite'}"
    env = {"LLMROUTE_SERVE_DECISION_LOG_URL": url, "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(work / "spool-k9")}
    server = Server(folder, home, work, env).start()
    killed_at: list[float] = []

    def killer() -> None:
        time.sleep(seconds * 0.7)
        killed_at.append(time.time())
        server.stop(signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    acks = asyncio.run(run_load(server.port, seconds))
    t.join()
    restarted = Server(folder, home, work, env).start()  # adopts and replays the dead process's spool
    drained = restarted.drain()
    restarted.stop()
    decisions, _ = stored_ids(url)
    lost = [killed_at[0] - acks.decisions[d] for d in set(acks.decisions) - decisions]
    extra = (f"lost decisions were acknowledged at most {max(lost) * 1000:.0f} ms before the kill" if lost
             else "no acknowledged decision lost") + f"; drained {drained}"
    return report("kill9", acks, url, extra)


def corrupt(folder: Path, home: Path, work: Path) -> dict[str, Any]:
    from tests.serving.corruptions import CORRUPTIONS, damaged_copy

    served = work / "served-router"
    shutil.copytree(folder, served, dirs_exist_ok=True)
    from llmroute.artifacts.manifest import write_manifest

    write_manifest(served)
    good = work / "good-router"
    shutil.copytree(served, good, dirs_exist_ok=True)
    server = Server(served, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": "off"}).start()
    version = httpx.get(f"{server.url}/ready").json()["router_version"]
    deaths = bad_swaps = refused = 0
    for k in CORRUPTIONS:
        damaged_copy(good, k, served)
        r = httpx.post(f"{server.url}/admin/reload", timeout=600)
        if not server.alive():
            deaths += 1
            print(f"  {k.name}: the server died", flush=True)
            server.start()
            continue
        refused += r.status_code == 503
        routed = httpx.post(f"{server.url}/route", json={"prompt": "What is 2 + 2?"}, timeout=60)
        if r.status_code != 503 or routed.status_code != 200 or routed.json().get("router_version") != version:
            bad_swaps += 1
        print(f"  {k.name}: {r.status_code} {r.json().get('error', {}).get('message', '')[:150]}", flush=True)
    server.stop()
    out = {"scenario": "corrupt", "kinds": len(CORRUPTIONS), "refused": refused, "process_deaths": deaths,
           "bad_swaps": bad_swaps}
    print(json.dumps(out), f"({load_average()})", flush=True)
    return out


def fuzz(folder: Path, home: Path, work: Path, cases: int) -> dict[str, Any]:
    from tests.serving.fuzzing import fuzz_schema, stub_provider

    stub = stub_provider()
    server = Server(folder, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{work / 'fuzz.sqlite'}",
                                         "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(work / "spool-fuzz")},
                    "--default-base-url", f"{stub.url}/v1").start()
    try:
        import schemathesis

        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        result = fuzz_schema(schema, cases, lambda case: case.call(base_url=server.url, timeout=60))
        alive = server.alive()
    finally:
        server.stop()
        stub.stop()
    out = {"scenario": "fuzz", **result, "server_alive": alive}
    print(json.dumps(out), f"({load_average()})", flush=True)
    return out


def _timed_health(port: int, stop: threading.Event, out: list[float]) -> None:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        t0 = time.perf_counter()
        c.request("GET", "/health")
        c.getresponse().read()
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.02)
    c.close()


def headers(folder: Path, home: Path, work: Path, loris: int = 200, seconds: float = 12.0) -> dict[str, Any]:
    server = Server(folder, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": "off",
                                   "LLMROUTE_SERVE_HEADER_TIMEOUT_S": "5"}).start()
    times: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_timed_health, args=(server.port, stop, times))
    probe.start()
    time.sleep(1)
    baseline = list(times)
    # one 50 MB Authorization header
    t0 = time.perf_counter()
    status = b""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /route HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        with contextlib.suppress(OSError):
            for _ in range(50):
                s.sendall(b"a" * (1 << 20))
        with contextlib.suppress(OSError):
            status = s.recv(64)
    big_s = time.perf_counter() - t0
    during_big = times[len(baseline):]
    # slow-loris clients: one header line a second
    socks = []
    for _ in range(loris):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    mark = len(times)
    t_loris = time.monotonic()
    answered: list[float] = []
    while time.monotonic() - t_loris < seconds:
        for s in list(socks):
            try:
                s.sendall(b"X-Slow: y\r\n")
            except OSError:
                answered.append(time.monotonic() - t_loris)
                socks.remove(s)
        time.sleep(1)
    during_loris = times[mark:]
    stop.set()
    probe.join()
    for s in socks:
        s.close()
    server.stop()

    def p(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 2 else max(xs, default=float("nan"))

    out = {"scenario": "headers", "big_header_answer": status.split(b"\r\n")[0].decode(errors="replace"),
           "big_header_client_s": round(big_s, 2),
           "health_p99_ms_baseline": round(p(baseline, 99), 1),
           "health_max_ms_during_50mb_header": round(max(during_big, default=float("nan")), 1),
           "loris_connections": loris, "loris_closed_by_server": len(answered) + 0,
           "loris_closed_after_s": round(max(answered, default=float("nan")), 1),
           "health_p99_ms_during_loris": round(p(during_loris, 99), 1)}
    print(json.dumps(out), f"({load_average()})", flush=True)
    return out


async def _loop_route(port: int, body: bytes, seconds: float, out: list[float],
                      statuses: list[int] | None = None) -> None:
    """POST ``body`` to /route in a loop for ``seconds``; latencies (ms) go to ``out``. Only 200 is
    expected unless ``statuses`` collects them (a prompt no context window fits is answered 422)."""
    conn = await Connection.open("127.0.0.1", port)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        status, _ = await conn.post(b"/route", body)
        if statuses is not None and status in (200, 422):
            statuses.append(status)
        elif status != 200:
            raise SystemExit(f"/route answered {status}")
        out.append((time.perf_counter() - t0) * 1000)
    await conn.close()


def long_prompt(folder: Path, home: Path, work: Path, seconds: float = 20.0, clients: int = 4,
                rounds: int = 2, log: bool = True, chars: int = 999_000) -> dict[str, Any]:
    url = f"sqlite:///{work / 'long.sqlite'}" if log else "off"
    server = Server(folder, home, work, {"LLMROUTE_SERVE_DECISION_LOG_URL": url,
                                         "LLMROUTE_SERVE_DECISION_LOG_SPOOL_DIR": str(work / "spool-long")}).start()
    normal = [json.dumps({"prompt": p}).encode() for p in prompts(clients)]
    text = "The quick brown fox jumps over the lazy dog. " * (chars // 45 + 1)
    big = json.dumps({"prompt": text[:chars]}).encode()
    statuses: list[int] = []

    async def phase(with_big: bool) -> tuple[list[float], list[float]]:
        others: list[float] = []
        bigs: list[float] = []
        tasks = [_loop_route(server.port, b, seconds, others) for b in normal]
        if with_big:
            tasks.append(_loop_route(server.port, big, seconds, bigs, statuses))
        await asyncio.gather(*tasks)
        return others, bigs

    results = []
    for _ in range(rounds):  # interleaved, to spread the machine's other load over both
        base, _ = asyncio.run(phase(False))
        loaded, bigs = asyncio.run(phase(True))
        results.append((base, loaded, bigs))
    server.stop()

    def q(xs: list[float], k: int) -> float:
        return round(statistics.quantiles(xs, n=100)[k - 1], 1)

    out = {"scenario": "long-prompt", "decision_log": log, "long_prompt_chars": chars,
           "long_prompt_answers": {str(s): statuses.count(s) for s in sorted(set(statuses))}, "rounds": [
        {"others_p50_ms": q(b, 50), "others_p99_ms": q(b, 99), "others_p50_ms_with_long": q(lg, 50),
         "others_p99_ms_with_long": q(lg, 99), "p99_change": f"{(q(lg, 99) / q(b, 99) - 1) * 100:+.0f}%",
         "long_p50_ms": q(g, 50), "long_p99_ms": q(g, 99), "long_requests": len(g)}
        for b, lg, g in results]}
    print(json.dumps(out), f"({load_average()})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=["all", "pg-outage", "full-disk", "kill9", "corrupt", "fuzz", "headers",
                                         "long-prompt"])
    ap.add_argument("--router", type=Path, help="Saved router folder (default: train a small one).")
    ap.add_argument("--outage", type=float, default=30.0, help="pg-outage: seconds PostgreSQL is down.")
    ap.add_argument("--hold", type=float, default=90.0, help="full-disk: seconds the disk stays full.")
    ap.add_argument("--cases", type=int, default=5000, help="fuzz: requests to generate.")
    ap.add_argument("--no-log", action="store_true", help="long-prompt: serve without a decision log (the ceiling).")
    ap.add_argument("--long-chars", type=int, default=999_000,
                    help="long-prompt: characters of the long prompt (999,000 fits no bundled model's context "
                         "window and is answered 422; 400,000, ~89k tokens, is routed and logged).")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-reliability-"))
    # a given router needs the embedders of its LLMROUTE_HOME (same fingerprint); a trained one gets a fresh home
    home = Path(os.environ["LLMROUTE_HOME"]) if args.router and os.environ.get("LLMROUTE_HOME") else tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    print(f"state under {tmp}; {load_average()}", flush=True)
    folder = args.router or train_small(home)
    work = tmp / "work"
    work.mkdir()
    run = {
        "pg-outage": lambda: pg_outage(folder, home, work, args.outage),
        "full-disk": lambda: full_disk(folder, home, work, args.hold),
        "kill9": lambda: kill9(folder, home, work),
        "corrupt": lambda: corrupt(folder, home, work),
        "fuzz": lambda: fuzz(folder, home, work, args.cases),
        "headers": lambda: headers(folder, home, work),
        "long-prompt": lambda: long_prompt(folder, home, work, log=not args.no_log, chars=args.long_chars),
    }
    for name in (run if args.scenario == "all" else [args.scenario]):
        run[name]()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
