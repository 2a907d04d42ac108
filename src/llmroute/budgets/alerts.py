"""Budget alerts: thresholds (default 50/80/100% of the amount) and a spend-rate forecast.

Each alert has a key (``threshold:0.8``, ``forecast``) and fires at most once per budget window:
:func:`due` lists the alerts a status calls for that are not in ``fired`` yet; whoever delivers
them claims each (budget, window start, key) first (the service claims it in the database, so
several processes deliver it once). The forecast extrapolates the window's spend rate so far
(``spent / elapsed share``) to the window's end; it needs ``min_elapsed`` of the window to have passed
and is not made for rolling windows (they are always full).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmroute.budgets.enforcement import BudgetStatus

FORECAST_MIN_ELAPSED = 0.1


@dataclass(frozen=True)
class Alert:
    budget: str
    key: str  # threshold:<share> | forecast
    scope: str
    subject: str
    spent_usd: float
    amount_usd: float
    share: float
    window_start: datetime
    window_end: datetime
    forecast_usd: float | None
    exceeds_at: datetime | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget, "alert": self.key, "scope": self.scope, "subject": self.subject,
            "spent_usd": self.spent_usd, "amount_usd": self.amount_usd, "share": self.share,
            "window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
            "forecast_usd": self.forecast_usd,
            "exceeds_at": self.exceeds_at.isoformat() if self.exceeds_at is not None else None,
            "message": self.message,
        }


def forecast(status: BudgetStatus, min_elapsed: float = FORECAST_MIN_ELAPSED) -> tuple[float, datetime | None] | None:
    """(spend forecast at the window's end, when the amount will be reached at this rate or None),
    or None when there is nothing to extrapolate yet (see module docstring)."""
    w = status.window
    if w.rolling:
        return None
    t = w.elapsed_share(status.now)
    if t < min_elapsed or status.spent_usd <= 0:
        return None
    projected = status.spent_usd / t
    if status.spent_usd >= status.spec.amount_usd:
        return projected, None
    if projected <= status.spec.amount_usd:
        return projected, None
    reach = status.spec.amount_usd / status.spent_usd * t
    return projected, w.start + (w.end - w.start) * reach


def due(status: BudgetStatus, fired: Collection[str] = ()) -> list[Alert]:
    """The alerts ``status`` calls for that are not in ``fired`` (keys already fired this window)."""
    spec, out = status.spec, []
    fc = forecast(status)
    forecast_usd = fc[0] if fc is not None else None

    def alert(key: str, message: str, exceeds_at: datetime | None = None) -> Alert:
        return Alert(spec.name, key, spec.scope, spec.subject, status.spent_usd, spec.amount_usd, status.share,
                     status.window.start, status.window.end, forecast_usd, exceeds_at, message)

    for t in spec.thresholds:
        key = f"threshold:{t:g}"
        if status.share >= t and key not in fired:
            out.append(alert(key, f"budget {spec.name!r} ({spec.scope} {spec.subject}) reached {t:.0%}: "
                                  f"${status.spent_usd:.4f} of ${spec.amount_usd:.2f} this {spec.window} window"))
    if spec.forecast and fc is not None and fc[1] is not None and "forecast" not in fired:
        out.append(alert("forecast", f"budget {spec.name!r} ({spec.scope} {spec.subject}) will exceed "
                                     f"${spec.amount_usd:.2f} by {fc[1]:%Y-%m-%d %H:%M} UTC at the current rate "
                                     f"(forecast ${fc[0]:.2f} for the window)", fc[1]))
    return out
