"""What the HTTP benchmarks share: server processes on 127.0.0.1 (start, wait until ready, stop), their
CPU time and memory from /proc, and a closed-loop load generator.

The load is closed-loop: at concurrency c, c clients each keep one HTTP/1.1 keep-alive connection and
send their next request as soon as the previous answer is in, so throughput is what the server
sustains at that concurrency and latency includes queueing at the server but no client-side backlog.
The client is a minimal HTTP/1.1 writer/reader on asyncio streams (a few tens of microseconds per
request, against ~1 ms for httpx), because it shares the machine's cores with the servers. Every
answer is checked by the caller's ``ok(status, body)``.

Not a script: imported by the scripts beside it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# Starts `llmroute serve` / `llmroute replay-server` with only those commands registered (the full CLI is
# not needed). The module moved from ``cli_serve`` to ``cli.serve``; either works, so a benchmark can run
# an older source tree beside the current one.
LAUNCH = (
    "import sys, typer\n"
    "try:\n    from llmroute.cli.serve import register\n"
    "except ImportError:\n    from llmroute.cli_serve import register\n"
    "app = typer.Typer(); register(app); app(sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn workers are children of the supervisor)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except FileNotFoundError:
                pass
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` and its descendants in MiB, from /proc (summed:
    pages shared between worker processes count once per process)."""
    now = peak = 0.0
    for p in process_tree(pid):
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:  # exited meanwhile
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "VmRSS" in fields:  # a process on its way out has no memory left to report
            now += float(fields["VmRSS"].split()[0]) / 1024
            peak += float(fields["VmHWM"].split()[0]) / 1024
    return now, peak


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its descendants, in seconds, from ``/proc/PID/stat``: each process's user and
    system time, which keeps the time of its threads that have ended (an idle thread pool's workers exit),
    plus the time of its children that have ended and been waited for. Summing the live threads'
    ``schedstat`` instead (nanoseconds) lost an ended thread's time, so a difference of two readings could
    go negative. Resolution: one clock tick (10 ms) per process per reading, against the seconds of CPU a
    level of a few hundred requests costs."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited meanwhile: its parent's cutime/cstime take its time once it is waited for
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime (fields 14-17 of stat)
    return total / CLOCK_TICKS


@dataclass
class Server:
    """A server subprocess and its URL."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    port: int

    @classmethod
    def start(cls, name: str, cmd: Sequence[str], port: int, env: dict[str, str], ready_path: str = "/health",
              timeout_s: float = 240.0, streak: int = 5) -> Server:
        """Start ``cmd`` and wait until ``ready_path`` answers 200 ``streak`` times in a row."""
        proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = cls(name, proc, f"http://127.0.0.1:{port}", port)
        t0, ok = time.perf_counter(), 0
        answer = "no answer"
        while ok < streak:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                raise SystemExit(f"{name} exited with {proc.returncode}: {err}")
            try:
                r = httpx.get(server.url + ready_path, timeout=2)
                answer = f"HTTP {r.status_code} {r.text[:200]}"
                ok = ok + 1 if r.status_code == 200 else 0
                if ok:
                    continue
            except httpx.TransportError:
                ok = 0
            if time.perf_counter() - t0 > timeout_s:
                server.stop()
                raise SystemExit(f"{name} not ready after {timeout_s:.0f} s: {answer}")
            time.sleep(0.2)
        return server

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def rss(self) -> float:
        """Resident memory of the server and its descendants, MiB."""
        return rss_mb(self.proc.pid)[0]

    def rss_own(self) -> float:
        """Resident memory of the server process alone, MiB (0 once it has exited)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads answers with a Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, host)

    async def post(self, path: bytes, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path, self.host, headers, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, b"".join(parts)
                parts.append(chunk[:-2])
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {head!r}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@dataclass(frozen=True)
class LevelResult:
    """One closed-loop run against one server at one concurrency."""

    latencies_ms: tuple[float, ...]
    wall_s: float
    errors: int
    server_cpu_s: float
    first_error: str | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1000

    def quantile(self, q: float) -> float:
        """The q-th percentile (q in 1..99) of latency, ms."""
        return statistics.quantiles(self.latencies_ms, n=100)[int(q) - 1]


async def _level(port: int, path: bytes, bodies: Sequence[bytes], concurrency: int, headers: bytes,
                 ok: Callable[[int, bytes], bool]) -> tuple[list[float], float, int, str | None]:
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    queue = list(reversed(bodies))
    conns = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal errors, first_error
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            status, answer = await conn.post(path, body, headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            if not ok(status, answer):
                errors += 1
                first_error = first_error or f"HTTP {status}: {answer[:300]!r}"

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return latencies, wall, errors, first_error


def run_level(server: Server, path: str, bodies: Sequence[bytes], concurrency: int,
              ok: Callable[[int, bytes], bool], headers: dict[str, str] | None = None) -> LevelResult:
    """Closed loop: ``concurrency`` connections share ``bodies`` (one request each)."""
    head = b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())
    cpu0 = server.cpu()
    try:
        lat, wall, errors, first = asyncio.run(_level(server.port, path.encode(), bodies, concurrency, head, ok))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise SystemExit(f"{server.name} at concurrency {concurrency}: {type(exc).__name__}: {exc}") from exc
    return LevelResult(tuple(lat), wall, errors, server.cpu() - cpu0, first)



Results = dict[tuple[str, int], list[LevelResult]]


def interleaved_rounds(servers: Sequence[Server], levels: Sequence[int], rounds: int,
                       measure: Callable[[Server, int], LevelResult],
                       after_level: Callable[[int, int, Results], None]) -> Results:
    """``measure`` every server at every concurrency level, ``rounds`` times. The servers' order
    alternates by round and level so that none always runs first (drift of a busy machine is shared); a
    level with a bad answer stops the run (SystemExit naming the server). ``after_level(round, c,
    results)`` reports as the run goes. Returns every round's result per (server name, concurrency)."""
    results: Results = {}
    for r in range(rounds):
        for c in levels:
            for s in servers if (r + c) % 2 == 0 else servers[::-1]:
                res = measure(s, c)
                if res.errors:
                    raise SystemExit(f"{s.name}: {res.errors} bad answers at concurrency {c}: {res.first_error}")
                results.setdefault((s.name, c), []).append(res)
            after_level(r, c, results)
    return results

def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'median [min-max]' of per-round values."""
    v = sorted(values)
    med = statistics.median(v)
    return (fmt + " [" + fmt + "-" + fmt + "]").format(med, v[0], v[-1]) if len(v) > 1 else fmt.format(med)


def variant(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``NAME=SRC[,VAR=VALUE...]``: a server variant run from the checkout's ``src`` folder SRC with extra
    environment settings (for the scripts that put two versions of llmroute side by side)."""
    name, sep, rest = spec.partition("=")
    src, *settings = rest.split(",")
    if not sep or not name or not src:
        raise SystemExit(f"variant {spec!r}: expected NAME=SRC[,VAR=VALUE...]")
    env = {}
    for kv in settings:
        k, eq, v = kv.partition("=")
        if not eq:
            raise SystemExit(f"variant {spec!r}: {kv!r} is not VAR=VALUE")
        env[k] = v
    path = Path(src).resolve()
    if not (path / "llmroute" / "__init__.py").is_file():
        raise SystemExit(f"variant {spec!r}: {path} holds no llmroute package (give a checkout's src folder)")
    return name, path, env


def answered_prompts(logs: Path, model: str) -> list[str]:
    """The distinct prompts ``model`` answered in the long-format ``logs`` (Parquet), in file order."""
    import pandas as pd

    df = pd.read_parquet(logs, columns=["prompt", "model"])
    prompts = df[df["model"] == model]["prompt"].drop_duplicates().tolist()
    if not prompts:
        raise SystemExit(f"{logs} has no prompt answered by {model}")
    return prompts
