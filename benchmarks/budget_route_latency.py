"""What budget checks add to ``POST /route``: p50/p99 of /route without budgets, with cached budgets
(alert + pace on the request's tenant, user and everything) and with a block budget (read from the
database on every check), interleaved request by request so machine load hits all three alike; plus
the budget check alone (``BudgetControl.admit`` + the decision's explanation), in microseconds.

    python benchmarks/budget_route_latency.py --router FOLDER [--requests 2000]

Each service runs in-process (Starlette's TestClient, SQLite decision log in a temporary folder);
the TestClient's own per-request overhead is the same for the three and cancels out in the
differences, which are what the script reports.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--requests", type=int, default=2000, help="Requests per configuration.")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from threadpoolctl import threadpool_limits

    from llmroute.artifacts.loading import load_router
    from llmroute.config import load_settings
    from llmroute.serving.app import create_app
    from llmroute.serving.budget_control import Subjects
    from llmroute.serving.schemas import RouteRequest
    from llmroute.serving.settings import ServeSettings

    core = load_settings()
    router = load_router(args.router, core)
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-budget-bench-"))
    cached = tmp / "cached.yaml"
    cached.write_text(yaml.safe_dump({"budgets": [
        {"name": "t", "tenant": "acme", "amount_usd": 1000, "window": "monthly", "enforcement": "pace"},
        {"name": "u", "user": "bob", "amount_usd": 1000, "window": "daily", "enforcement": "alert"},
        {"name": "all", "global": True, "amount_usd": 10000, "window": "monthly", "enforcement": "alert"}]}))
    block = tmp / "block.yaml"
    block.write_text(yaml.safe_dump({"budgets": [
        {"name": "t", "tenant": "acme", "amount_usd": 1000, "window": "monthly", "enforcement": "block"}]}))
    configs: dict[str, Path | None] = {"no budgets": None, "cached (pace+alert)": cached, "block (DB read)": block}
    clients: dict[str, Any] = {}
    for name, f in configs.items():
        settings = ServeSettings(model=str(args.router), decision_log_url=f"sqlite:///{tmp / (name[:5] + '.sqlite')}",
                                 budgets=str(f) if f else None)
        clients[name] = TestClient(create_app(settings, router, core=core)).__enter__()
    # some spend on the tenant, so pacing is active (it needs 20 requests in the window to extrapolate)
    from datetime import UTC, datetime

    from llmroute.data.decision_log.ledger import Charge

    for name in ("cached (pace+alert)", "block (DB read)"):
        control = clients[name].app_state["services"].budgets
        for i in range(50):
            control.ledger.charge(Charge(f"warm{i}", 0.001, datetime.now(UTC), "chat", "acme", "bob"))
        control.refresh_spend()
    body = {"prompt": "Write a python function that reverses a list", "tenant": "acme", "user": "bob"}
    times: dict[str, list[float]] = {n: [] for n in configs}
    with threadpool_limits(1):
        for c in clients.values():  # warm up
            for _ in range(50):
                assert c.post("/route", json=body).status_code == 200
        for _ in range(args.requests):
            for name, c in clients.items():
                t0 = time.perf_counter()
                r = c.post("/route", json=body)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
    base = statistics.median(times["no budgets"])
    print(f"/route in-process, {args.requests} requests per configuration, interleaved")
    for name, xs in times.items():
        p50 = statistics.median(xs)
        print(f"  {name:22s} p50 {p50:6.3f} ms  p99 {_pct(xs, 0.99):6.3f} ms  p50 - no budgets {p50 - base:+.3f} ms")

    # the check alone, on the event loop as the handler runs it
    for name in ("cached (pace+alert)", "block (DB read)"):
        control = clients[name].app_state["services"].budgets
        opts = RouteRequest(**body)
        decision = router.route(body["prompt"])

        async def run() -> list[float]:
            out = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                adm = control.admit(router, opts, Subjects("acme", "bob", None))  # noqa: B023 - run() runs in this iteration
                adm.explain(decision, router, opts)  # noqa: B023
                out.append((time.perf_counter() - t0) * 1e6)
            return out

        xs = clients[name].portal.call(run)
        print(f"  budget check alone, {name:20s} p50 {statistics.median(xs):7.1f} us  p99 {_pct(xs, 0.99):7.1f} us")
    for c in clients.values():
        c.__exit__(None, None, None)


if __name__ == "__main__":
    main()
