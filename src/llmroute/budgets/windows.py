"""Budget windows and the ledger's time buckets.

Spend is kept in 15-minute buckets aligned to UTC (:data:`BUCKET`). Every timezone's offset is a
multiple of 15 minutes, so a calendar window -- a local day (midnight to midnight), week (Monday
00:00) or month (the 1st, 00:00) in the budget's timezone, daylight-saving shifts included -- is an
exact run of buckets. A rolling window is the last 1, 7 or 30 days up to the end of the current
bucket, so its trailing edge moves in 15-minute steps (spend leaves it at most 15 minutes late).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

BUCKET = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLLING_SPAN = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=30)}


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC; ``rolling`` windows have no calendar reset."""

    start: datetime
    end: datetime
    rolling: bool = False

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def elapsed_share(self, now: datetime) -> float:
        """How much of the window has passed at ``now``, in [0, 1] (a rolling window is always full)."""
        if self.rolling:
            return 1.0
        return min(1.0, max(0.0, (now - self.start).total_seconds() / self.seconds))


def bucket_start(at: datetime) -> datetime:
    """The start of the 15-minute UTC bucket holding ``at`` (an aware datetime)."""
    n = (at.astimezone(UTC) - _EPOCH) // BUCKET
    return _EPOCH + n * BUCKET


def window_at(window: str, rolling: bool, tz: ZoneInfo, now: datetime) -> Window:
    """The window of a budget that holds ``now`` (aware). Raises ``ValueError`` on an unknown window."""
    if window not in ROLLING_SPAN:
        raise ValueError(f"unknown window {window!r}; expected one of {sorted(ROLLING_SPAN)}")
    if rolling:
        end = bucket_start(now) + BUCKET
        return Window(end - ROLLING_SPAN[window], end, rolling=True)
    local = now.astimezone(tz)
    day = local.date()
    if window == "daily":
        first, nxt = day, day + timedelta(days=1)
    elif window == "weekly":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        nxt = (first.replace(year=first.year + 1, month=1) if first.month == 12
               else first.replace(month=first.month + 1))
    start = datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    return Window(start, end)
