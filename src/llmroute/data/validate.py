"""Check a benchmark-log frame against the schema and coerce it to the schema's dtypes.

Row numbers in errors are 1-based and count data rows the way a user counts them in the file:
for CSV the header is not counted (row 1 is the first record under the header), for JSONL it is the
line number, for Parquet and in-memory frames it is the position in the frame. Callers whose rows
do not map one-to-one onto records (blank JSONL lines, wide files turned long) pass
``row_numbers`` so that errors point at the right place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmroute.data.schema import COLUMNS, DTYPES, REQUIRED, TEXT, LogValidationError

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}
_NON_NEGATIVE = ("cost_usd", "input_tokens", "output_tokens", "latency_ms")
_UTC_NS = pd.DatetimeTZDtype(unit="ns", tz="UTC")


def validate_logs(
    df: pd.DataFrame, file: str, *, row_numbers: Sequence[int] | None = None
) -> pd.DataFrame:
    """Validate ``df`` as benchmark logs read from ``file`` and return it in schema form.

    Checks, in this order, raising :class:`LogValidationError` at the first problem found:
    required columns present; every value coercible to its column's dtype (absent optional
    columns are added as nulls, an absent ``cost_is_estimated`` as False); required fields
    non-null and non-empty; ``quality`` in [0, 1]; ``cost_usd``, token counts and ``latency_ms``
    non-negative; no repeated (prompt_id, model) pair. Columns outside the schema are dropped.

    ``row_numbers[i]`` is the number to report for ``df``'s i-th row (default ``i + 1``).
    Naive ``created_at`` timestamps are taken as UTC. Returns a new frame with exactly
    :data:`COLUMNS`, in order, with the schema's dtypes and a fresh RangeIndex.
    """
    rows = list(row_numbers) if row_numbers is not None else list(range(1, len(df) + 1))
    if len(rows) != len(df):
        raise ValueError(f"row_numbers has {len(rows)} entries for {len(df)} rows")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        names = ", ".join(missing)
        raise LogValidationError(
            file, None, names, f"missing required column(s): {names}; expected columns {list(COLUMNS)}"
        )
    src = df.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    for col in COLUMNS:
        if col in src.columns:
            out[col] = _coerce(src[col], col, file, rows)
        elif col == "cost_is_estimated":
            out[col] = pd.Series(False, index=src.index, dtype="bool")
        else:
            out[col] = pd.Series(index=src.index, dtype=DTYPES[col])
    result = pd.DataFrame(out)
    _check_required(result, file, rows)
    _check_ranges(result, file, rows)
    ensure_unique_pairs(result, [file] * len(result), rows)
    return result


def validate_sources(df: pd.DataFrame, files: Sequence[str], rows: Sequence[int]) -> pd.DataFrame:
    """:func:`validate_logs` for a frame assembled from several files.

    ``files[i]`` and ``rows[i]`` locate ``df``'s i-th row in its own file. Each file's rows are
    validated with that file's name and row numbers, then (prompt_id, model) pairs are checked
    across files. Returns the validated frame, rows grouped by file in order of first appearance.
    """
    if len(files) != len(df) or len(rows) != len(df):
        raise ValueError("files and rows need one entry per row of df")
    if df.empty:
        return validate_logs(df, "<no rows>")
    file_arr = np.asarray(files, dtype=object)
    row_arr = np.asarray(rows)
    order = list(dict.fromkeys(files))
    parts, out_files, out_rows = [], [], []
    for file in order:
        mask = file_arr == file
        part_rows = row_arr[mask].tolist()
        parts.append(validate_logs(df[mask], file, row_numbers=part_rows))
        out_files += [file] * len(part_rows)
        out_rows += part_rows
    result = pd.concat(parts, ignore_index=True)
    ensure_unique_pairs(result, out_files, out_rows)
    return result


def ensure_unique_pairs(df: pd.DataFrame, files: Sequence[str], rows: Sequence[int]) -> None:
    """Raise :class:`LogValidationError` at the first repeated (prompt_id, model) pair.

    ``files[i]`` and ``rows[i]`` locate ``df``'s i-th row; the error names the repeat's file and
    row and, in its message, where the pair was first seen (which may be another file).
    """
    keys = df[["prompt_id", "model"]].reset_index(drop=True)
    dup = keys.duplicated(keep="first").to_numpy()
    if not dup.any():
        return
    second = int(np.flatnonzero(dup)[0])
    prompt_id, model = keys.iloc[second]
    same = (keys["prompt_id"] == prompt_id) & (keys["model"] == model)
    first = int(np.flatnonzero(same.to_numpy())[0])
    where = f"row {rows[first]}" if files[first] == files[second] else f"{files[first]}, row {rows[first]}"
    raise LogValidationError(
        files[second],
        rows[second],
        "(prompt_id, model)",
        f"duplicate (prompt_id, model) pair ({prompt_id!r}, {model!r}), first seen at {where}; "
        "expected each prompt/model pair at most once",
    )


def _fail(file: str, rows: Sequence[int], mask: Any, col: str, expected: str, values: pd.Series) -> None:
    bad = np.flatnonzero(np.asarray(mask, dtype=bool))
    if len(bad):
        i = int(bad[0])
        raise LogValidationError(file, rows[i], col, f"expected {expected}, got {shown_value(values.iloc[i])}")


def shown_value(v: Any) -> str:
    """A value as an error message shows it: Python's repr of the plain value (``1.5``, ``'abc'``),
    never a NumPy or pandas repr such as ``np.float64(1.5)``."""
    if v is None or _is_nan(v):
        return "an empty value"
    if isinstance(v, np.generic):
        v = v.item()
    return repr(v)


def _coerce(s: pd.Series, col: str, file: str, rows: Sequence[int]) -> pd.Series:
    dtype = DTYPES[col]
    if dtype == TEXT:
        if isinstance(s.dtype, pd.StringDtype):  # as read from Parquet: every value text or missing already
            return s.astype(TEXT)
        ok = s.map(lambda v: v is None or isinstance(v, (str, int, np.integer)) or _is_nan(v))
        _fail(file, rows, ~ok.to_numpy(dtype=bool), col, "text", s)
        return s.map(lambda v: v if isinstance(v, str) or v is None or _is_nan(v) else str(v)).astype(TEXT)
    if dtype == "bool":
        parsed = s.map(_parse_bool)
        _fail(file, rows, parsed.isna().to_numpy(), col, "true or false", s)
        return parsed.astype("bool")
    if dtype.startswith("datetime64"):
        return _coerce_datetime(s, col, file, rows)
    if s.dtype == "bool":
        _fail(file, rows, np.ones(len(s), dtype=bool), col, "a number", s)
    null = s.isna().to_numpy()
    num = pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    _fail(file, rows, num.isna().to_numpy() & ~null, col, "a number", s)
    num = num.astype("float64")
    if dtype == "Int64":
        fractional = num.notna().to_numpy() & (np.mod(num.fillna(0).to_numpy(), 1) != 0)
        _fail(file, rows, fractional, col, "a whole number", s)
        too_big = num.abs().fillna(0).to_numpy() > 2**62
        _fail(file, rows, too_big, col, "a token count below 2**62", s)
        return num.astype("Int64")
    _fail(file, rows, np.isinf(num.to_numpy()), col, "a finite number", s)
    return num


def _coerce_datetime(s: pd.Series, col: str, file: str, rows: Sequence[int]) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        converted: pd.Series = s.dt.tz_convert("UTC").astype(_UTC_NS)
        return converted
    if pd.api.types.is_datetime64_dtype(s.dtype):
        localized: pd.Series = s.dt.tz_localize("UTC").astype(_UTC_NS)
        return localized
    null = s.isna().to_numpy()
    not_text = ~s.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool) & ~null
    _fail(file, rows, not_text, col, "an ISO 8601 timestamp", s)
    parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    _fail(file, rows, parsed.isna().to_numpy() & ~null, col, "an ISO 8601 timestamp", s)
    result: pd.Series = parsed.astype(_UTC_NS)
    return result


def _is_nan(v: Any) -> bool:
    return v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _parse_bool(v: Any) -> bool | None:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def _check_required(df: pd.DataFrame, file: str, rows: Sequence[int]) -> None:
    for col in REQUIRED:
        s = df[col]
        _fail(file, rows, s.isna().to_numpy(), col, "a value (this field is required)", s)
        if DTYPES[col] == TEXT:
            blank = _blank(s)
            _fail(file, rows, blank, col, "non-empty text (this field is required)", s)


BLANK_CHUNK = 65_536  # texts checked for blankness at a time (as Python strings, ~0.3 GB at 5 kB each)


def _blank(s: pd.Series) -> np.ndarray:
    """``v.strip() == ""`` for each (non-null) text, :data:`BLANK_CHUNK` texts at a time: neither a stripped
    copy of every text nor every text as a Python string at once (GiBs for a million prompts held in Arrow)."""
    out = np.empty(len(s), dtype=bool)
    for i in range(0, len(s), BLANK_CHUNK):
        out[i : i + BLANK_CHUNK] = [v == "" or v.isspace() for v in s.iloc[i : i + BLANK_CHUNK].to_numpy(dtype=object)]
    return out


def _check_ranges(df: pd.DataFrame, file: str, rows: Sequence[int]) -> None:
    q = df["quality"]
    _fail(file, rows, ((q < 0) | (q > 1)).to_numpy(), "quality", "a number in [0, 1]", q)
    for col in _NON_NEGATIVE:
        s = df[col]
        _fail(file, rows, (s < 0).fillna(False).to_numpy(dtype=bool), col, "a number >= 0", s)
