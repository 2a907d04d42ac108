"""Numbers in model answers, and their mean or median (the numeric ensembles of the chat service).

:func:`parse_number` reads the number an answer gives, in this order: a ``#### N`` final-answer
marker (GSM8K style), ``\\boxed{N}``, ``answer is N`` / ``answer: N``, an answer that is only a
number (with punctuation or a unit-free sign around it), else the *last* number in the text. Thousands
separators (``1,234``) are read, fractions ``a/b`` are divided, a trailing ``%`` is kept as a percent
(``50%`` is 50). An answer with no number is non-numeric (None).

:func:`combine` is the mean or median of the numbers read; :func:`format_number` writes the result
back as text (an integer when it is one).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence

KINDS: tuple[str, ...] = ("mean", "median")

_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
_MARKERS = (
    re.compile(rf"####\s*\$?\s*({_NUM})"),
    re.compile(rf"\\boxed\{{\s*\$?\s*({_NUM})\s*\}}"),
    re.compile(rf"answer\s*(?:is)?\s*[:=]?\s*\$?\s*\(?({_NUM})", re.IGNORECASE),
)
_ONLY = re.compile(rf"^\W*?\$?\s*({_NUM})\s*%?\W*$")
_ANY = re.compile(_NUM)


def _value(token: str) -> float | None:
    t = token.replace(",", "").replace("−", "-").replace(" ", "")
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            d = float(den)
            return float(num) / d if d != 0 else None
        return float(t)
    except ValueError:
        return None


def parse_number(text: str) -> float | None:
    """The number ``text`` answers with (see module docstring), or None when it has none."""
    s = " ".join(text.strip().split())
    for pattern in _MARKERS:
        found = pattern.findall(s)
        if found:
            return _finite(_value(found[-1]))
    m = _ONLY.match(s)
    if m:
        return _finite(_value(m.group(1)))
    found = _ANY.findall(s)
    return _finite(_value(found[-1])) if found else None


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def combine(values: Sequence[float], kind: str) -> float:
    """The ``kind`` ('mean' | 'median') of ``values`` (at least one)."""
    if not values:
        raise ValueError("no numbers to combine")
    if kind == "mean":
        return statistics.fmean(values)
    if kind == "median":
        return float(statistics.median(values))
    raise ValueError(f"unknown numeric ensemble {kind!r}; expected one of {KINDS}")


def format_number(x: float) -> str:
    """``x`` as an answer: '42' for 42.0, else up to 10 significant digits ('3.333333333')."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.10g}"
