"""The spend ledger under concurrency, with real server processes: ``llmroute serve --workers 2`` on SQLite
and two replicas on one PostgreSQL; 16 concurrent clients per process on one tenant with a block budget.

Every answered request's cost is in the ledger exactly once, and the overshoot of the hard budget is at
most the cost of the requests that can be in flight at once (32 clients x the cost of one request)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger
from tests.decision_log.conftest import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.processes import free_port, stop_process_group
from tests.serving.conftest import Trained

COST = 0.01
AMOUNT = 0.5  # 50 requests' worth
CLIENTS_PER_PROCESS = 16
REQUESTS = 160
READY_SECONDS = 240


class _Provider:
    """An OpenAI-compatible stand-in answering every call after 20 ms with ``usage.cost`` = COST."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(0.02)
                out = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cost": COST},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def provider() -> Iterator[_Provider]:
    p = _Provider()
    yield p
    p.server.shutdown()
    p.server.server_close()


def _serve(trained: Trained, tmp: Path, log_url: str, budgets: Path, provider: _Provider, workers: int,
           name: str, procs: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    env = {**os.environ, "LLMROUTE_HOME": str(trained.core.home), "LLMROUTE_SERVE_DECISION_LOG_URL": log_url,
           "LLMROUTE_SERVE_DEFAULT_BASE_URL": provider.url, "LLMROUTE_SERVE_CASCADE_MAX_ATTEMPTS": "1",
           "LLMROUTE_SERVE_SCORER_WEIGHT": "0", "LLMROUTE_SERVE_PROVIDER_RETRIES": "0"}
    cmd = [sys.executable, "-m", "llmroute.cli", "serve", "--model", str(trained.folder), "--port", str(port),
           "--workers", str(workers), "--budgets", str(budgets), "--log-level", "warning"]
    log = tmp / f"{name}.log"
    with log.open("wb") as fh:
        procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_SECONDS
    ready_in_a_row = 0  # each probe is a new connection, taken by any worker: all must have loaded the router
    while time.monotonic() < deadline:
        if procs[-1].poll() is not None:
            pytest.fail(f"llmroute serve exited:\n{log.read_text()[-3000:]}")
        try:
            ok = httpx.get(f"{url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        ready_in_a_row = ready_in_a_row + 1 if ok else 0
        if ready_in_a_row >= 12 * workers:
            return url
        time.sleep(0.05 if ok else 0.5)
    pytest.fail(f"llmroute serve not ready after {READY_SECONDS} s:\n{log.read_text()[-3000:]}")
    return url


def _hammer(urls: list[str]) -> list[tuple[int, float]]:
    """REQUESTS chat requests for tenant 'acme', CLIENTS_PER_PROCESS at a time per server; (status, cost)."""
    jobs = [urls[i % len(urls)] for i in range(REQUESTS)]
    clients = [httpx.Client(timeout=60) for _ in range(CLIENTS_PER_PROCESS * len(urls))]
    local = threading.local()
    pool_ids = iter(range(len(clients)))
    lock = threading.Lock()

    def one(url: str) -> tuple[int, float]:
        if not hasattr(local, "client"):
            with lock:
                local.client = clients[next(pool_ids)]
        r = local.client.post(f"{url}/v1/chat/completions", json={
            "model": "llmroute", "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            "llmroute": {"tenant": "acme"}})
        if r.status_code == 200:
            return 200, float(r.json()["llmroute"]["total_cost_usd"])
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["type"] == "budget_exceeded" and err["budget"] == "acme" and err["spent_usd"] >= AMOUNT
        return 429, 0.0

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            return list(pool.map(one, jobs))
    finally:
        for c in clients:
            c.close()


def _check(log_url: str, results: list[tuple[int, float]], in_flight: int) -> None:
    answered = [c for s, c in results if s == 200]
    refused = sum(s == 429 for s, _ in results)
    assert refused > 0 and len(answered) >= AMOUNT / COST
    with DecisionLogStore(log_url) as store:
        ledger = BudgetLedger(store.engine)
        total, n = ledger.charges_total()
        (acme,) = [s for s in ledger.list_budgets() if s.name == "acme"]
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        ((tenant_spend, calls),) = ledger.spend([("tenant", "acme", now - timedelta(days=2), now + timedelta(days=1))])
    assert acme.source == "file"
    assert n == len(answered) and calls == len(answered)  # never lost, never doubled
    assert total == pytest.approx(sum(answered), abs=1e-9) and tenant_spend == pytest.approx(total, abs=1e-9)
    overshoot = total - AMOUNT
    print(f"answered {len(answered)}, refused {refused}, booked ${total:.2f} in {n} charges "
          f"(overshoot ${overshoot:.2f}, bound ${in_flight * COST:.2f})")
    assert overshoot <= in_flight * COST + 1e-9, (overshoot, len(answered), refused)


def _budget_file(tmp: Path) -> Path:
    f = tmp / "budgets.yaml"
    f.write_text(yaml.safe_dump({"budgets": [
        {"name": "acme", "tenant": "acme", "amount_usd": AMOUNT, "window": "daily", "enforcement": "block"}]}))
    return f


@pytest.mark.slow
def test_two_workers_on_sqlite_count_every_call_once_and_stop_at_the_budget(
    trained: Trained, tmp_path: Path, provider: _Provider
) -> None:
    log_url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = _serve(trained, tmp_path, log_url, _budget_file(tmp_path), provider, 2, "serve", procs)
        results = _hammer([url, url])  # one server, two worker processes, 32 clients
    finally:
        for p in procs:
            stop_process_group(p)
    _check(log_url, results, 2 * CLIENTS_PER_PROCESS)


@pytest.mark.slow
def test_two_replicas_on_postgresql_count_every_call_once_and_stop_at_the_budget(
    trained: Trained, tmp_path: Path, provider: _Provider, pg_url: str  # noqa: F811
) -> None:
    DecisionLogStore(pg_url).close()  # migrate once before both replicas start
    procs: list[subprocess.Popen[bytes]] = []
    budgets = _budget_file(tmp_path)
    try:
        urls = [_serve(trained, tmp_path, pg_url, budgets, provider, 1, f"replica{i}", procs) for i in range(2)]
        results = _hammer(urls)
    finally:
        for p in procs:
            stop_process_group(p)
    _check(pg_url, results, 2 * CLIENTS_PER_PROCESS)
