"""One process's charges since its cached spend was last read from the ledger, summed per subject.

A service process adds its own charges to the spend it read from the ledger (every
``budget_refresh_s``), so its budgets see them at once. A budget check asks, for one subject key
(``("tenant", "acme")``, ``("global", "*")``, ...), for the charges booked after the ledger read and
inside the budget's window: :meth:`LocalSpend.since`, two bisections over the key's running sums
instead of a walk over every charge (hundreds a second at full load, for every budget a request
touches).

One thread adds and forgets (the service's event loop, as charges are booked); others may ask at the
same time (the compute threads that admit requests). A key's series only grows in place, its running
total first and its sequence numbers last, so a reader never indexes past what it can read; forgetting
swaps in a new, shorter series, so a reader holding the old one still sees it whole.

Times are kept non-decreasing per key: a charge booked after a later-stamped one (two charges that
shared a transaction, a clock stepped back) is filed at the later time. That can only move a charge
across a window boundary in this cache, by the time two charges take to be booked, until the next
ledger read replaces it; the ledger keeps every charge's own time.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

Key = tuple[str, str]


@dataclass
class _Series:
    seqs: list[int] = field(default_factory=list)
    ats: list[datetime] = field(default_factory=list)
    totals: list[float] = field(default_factory=lambda: [0.0])  # totals[i]: the cost of the charges before i

    def add(self, seq: int, cost: float, at: datetime) -> None:
        # this order keeps len(totals) > len(ats) >= len(seqs) for a reader in another thread (see module docstring)
        self.totals.append(self.totals[-1] + cost)
        self.ats.append(max(at, self.ats[-1]) if self.ats else at)
        self.seqs.append(seq)

    def after(self, seq: int) -> _Series | None:
        """The charges numbered after ``seq``: this series when that is all of them, else a new one (None: none)."""
        i = bisect_right(self.seqs, seq)
        if i == len(self.seqs):
            return None
        return self if i == 0 else _Series(self.seqs[i:], self.ats[i:], self.totals[i:])


class LocalSpend:
    """Charges numbered by a rising sequence (the caller's), each filed under every subject key it spends
    for. One thread adds and forgets; any thread may ask (see module docstring)."""

    def __init__(self) -> None:
        self._series: dict[Key, _Series] = {}
        self._last_seq = 0

    def add(self, seq: int, keys: Iterable[Key], cost_usd: float, at: datetime) -> None:
        if seq <= self._last_seq:
            raise ValueError(f"charge sequence must rise: {seq} after {self._last_seq}")
        self._last_seq = seq
        for key in dict.fromkeys(keys):  # a key named twice is still one charge to it
            self._series.setdefault(key, _Series()).add(seq, cost_usd, at)

    def since(self, key: Key, after_seq: int, start: datetime, end: datetime) -> tuple[float, int]:
        """Spend and number of the key's charges numbered after ``after_seq`` with ``start <= time < end``."""
        s = self._series.get(key)
        if s is None:
            return 0.0, 0
        lo = max(bisect_right(s.seqs, after_seq), bisect_left(s.ats, start))
        hi = bisect_left(s.ats, end)
        return (s.totals[hi] - s.totals[lo], hi - lo) if hi > lo else (0.0, 0)

    def forget_through(self, seq: int) -> None:
        """Drop the charges numbered up to ``seq`` (the ledger read that saw them has been taken)."""
        for key, s in list(self._series.items()):
            kept = s.after(seq)
            if kept is None:
                del self._series[key]
            elif kept is not s:
                self._series[key] = kept
