"""CPU of one cached budget check (``BudgetControl.status``) with a second's worth of this process's charges.

    python benchmarks/budget_status.py                        # 450 charges (the proxy's c = 32 throughput)
    python benchmarks/budget_status.py --charges 2000 --checks 20000
    PYTHONPATH=OTHER/src python benchmarks/budget_status.py   # another checkout, for a before/after

A service process adds its own charges since the last ledger read (every ``budget_refresh_s``, 1 s by
default) to the spend it read, and every request checks each budget of its subjects that way. This
books ``--charges`` charges through a real ``BudgetControl`` on a SQLite ledger in a temporary folder
(tenants and users spread over them, as many as at full load in one refresh interval), then times
``--checks`` status() calls for a global, a tenant and a user budget (CPU time of this thread).
In-process and single-threaded: the machine's load moves the microseconds a little, not the order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from llmroute.data.decision_log.store import DecisionLogStore
from llmroute.serving.budget_control import Subjects, open_budget_control

BUDGETS = [
    {"name": "everything", "global": True, "amount_usd": 10000, "window": "monthly", "enforcement": "alert"},
    {"name": "acme", "tenant": "acme", "amount_usd": 1000, "window": "daily", "enforcement": "pace"},
    {"name": "bob", "user": "bob", "amount_usd": 100, "window": "daily", "rolling": True, "enforcement": "alert"},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--charges", type=int, default=450, help="Charges booked since the last ledger read.")
    ap.add_argument("--checks", type=int, default=5000, help="status() calls timed per budget.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-budget-status-"))
    (tmp / "budgets.yaml").write_text(yaml.safe_dump({"budgets": BUDGETS}))
    with DecisionLogStore(f"sqlite:///{tmp / 'log.sqlite'}") as store:
        control = open_budget_control(str(tmp / "budgets.yaml"), store.engine, CollectorRegistry(),
                                      refresh_s=1.0, exact_share=0.0)

        async def book() -> None:
            for i in range(args.charges):
                who = Subjects(["acme", "beta", "gamma"][i % 3], ["bob", "eve"][i % 2], None)
                await control.charge(f"c{i}", 0.001, who, "chat", urgent=False)
            await control.drain()

        asyncio.run(book())
        print(f"status() with {args.charges:,} charges since the last ledger read "
              f"(load average {os.getloadavg()[0]:.2f}):")
        for spec in control.specs.values():
            st = control.status(spec)
            t0 = time.thread_time()
            for _ in range(args.checks):
                control.status(spec)
            per_check = (time.thread_time() - t0) / args.checks * 1e6
            label = f"{spec.name} ({spec.scope}, {'rolling ' if spec.rolling else ''}{spec.window})"
            print(f"  {label:34s} {per_check:6.1f} us of CPU a check; spend ${st.spent_usd:.3f} in {st.calls} calls")


if __name__ == "__main__":
    main()
