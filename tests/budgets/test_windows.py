"""Budget windows: calendar-aligned in a timezone (DST included), rolling, and 15-minute buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from llmroute.budgets.windows import bucket_start, window_at


def test_calendar_windows_in_a_timezone() -> None:
    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)  # a Sunday; Europe/Berlin switched to summer time at 01:00 UTC
    berlin = ZoneInfo("Europe/Berlin")
    day = window_at("daily", False, berlin, now)
    assert day.start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC) and day.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert day.seconds == 23 * 3600  # the short day
    week = window_at("weekly", False, berlin, now)
    assert week.start == datetime(2026, 3, 22, 23, 0, tzinfo=UTC)  # Monday 00:00 CET
    month = window_at("monthly", False, ZoneInfo("Asia/Kathmandu"), datetime(2026, 12, 31, 20, 0, tzinfo=UTC))
    assert month.start == datetime(2026, 12, 31, 18, 15, tzinfo=UTC)  # 1 January 00:00 at +05:45
    assert month.end == datetime(2027, 1, 31, 18, 15, tzinfo=UTC)
    assert abs(month.elapsed_share(datetime(2026, 12, 31, 18, 15, tzinfo=UTC))) < 1e-12


def test_rolling_windows_and_buckets() -> None:
    now = datetime(2026, 5, 5, 10, 7, 30, tzinfo=UTC)
    assert bucket_start(now) == datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    w = window_at("weekly", True, ZoneInfo("UTC"), now)
    assert w.rolling and w.end == datetime(2026, 5, 5, 10, 15, tzinfo=UTC) and w.end - w.start == timedelta(days=7)
    assert w.elapsed_share(now) == 1.0
    # every calendar boundary in a 15-minute-offset zone is a bucket boundary
    for zone in ("Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Australia/Eucla"):
        b = window_at("daily", False, ZoneInfo(zone), now)
        assert bucket_start(b.start) == b.start and bucket_start(b.end) == b.end
