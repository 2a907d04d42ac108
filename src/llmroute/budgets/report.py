"""Each budget's current window as one JSON-able row: what ``llmroute budgets status`` prints and the
dashboard's "Budgets and alerts" panel shows (one function, so the two always agree).

The spend is read from the ledger (exact, not a cache), the forecast is :func:`llmroute.budgets.alerts.forecast`
and the alerts are those claimed in the ledger for the window that is current at ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from llmroute.budgets import alerts
from llmroute.budgets.enforcement import BudgetStatus
from llmroute.budgets.spec import BudgetSpec
from llmroute.budgets.windows import window_at
from llmroute.data.decision_log.ledger import BudgetLedger


def status_rows(ledger: BudgetLedger, specs: Iterable[BudgetSpec], sources: Mapping[str, str],
                now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per budget, sorted by name: spec fields, spend, calls, share, window bounds, ``resets_at``
    (None for a rolling window), forecast at the window's end (None before enough of the window has passed)
    with ``exceeds_at``, and ``alerts_fired`` (sorted alert keys). ``sources`` maps a budget's name to
    ``file`` or ``api`` (missing: ``file``). Blocking (database reads)."""
    now = now or datetime.now(UTC)
    ordered = sorted(specs, key=lambda s: s.name)
    windows = [window_at(s.window, s.rolling, s.tz, now) for s in ordered]
    spent = ledger.spend([(s.scope, s.subject, w.start, w.end) for s, w in zip(ordered, windows)])
    rows = []
    for s, w, (usd, calls) in zip(ordered, windows, spent):
        st = BudgetStatus(s, w, usd, calls, now)
        fc = alerts.forecast(st)
        rows.append({
            "name": s.name, "scope": s.scope, "subject": s.subject, "amount_usd": s.amount_usd,
            "window": ("rolling " if s.rolling else "") + s.window, "timezone": s.timezone,
            "enforcement": s.enforcement, "source": sources.get(s.name, "file"), "spent_usd": usd, "calls": calls,
            "share": st.share, "window_start": w.start.isoformat(), "window_end": w.end.isoformat(),
            "resets_at": st.resets_at.isoformat() if st.resets_at else None,
            "forecast_usd": fc[0] if fc else None, "exceeds_at": fc[1].isoformat() if fc and fc[1] else None,
            "alerts_fired": sorted(ledger.fired_alerts(s.name, w.start)),
        })
    return rows
