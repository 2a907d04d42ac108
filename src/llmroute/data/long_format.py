"""Import logs that are already in the schema ("long" format): CSV, JSONL or Parquet.

The format is chosen by extension: ``.csv``; ``.jsonl`` / ``.ndjson`` (one JSON object per
line); ``.parquet`` / ``.pq``. Row numbers in errors: CSV data rows with the header not counted,
JSONL line numbers, Parquet 1-based positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from llmroute.data.schema import COLUMNS, ImportReport, LogValidationError, empty_frame
from llmroute.data.validate import ensure_unique_pairs, validate_logs

EXTENSIONS: dict[str, str] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
}
NOTE_EXTRA = "columns outside the schema, ignored ({names})"
NOTE_SOURCE = "rows without a source column: source set to the file's name"
SKIP_UNKNOWN = "quality empty: outcome unknown"


def import_long(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, ImportReport]:
    """Read and validate schema-shaped log files; a (prompt_id, model) pair may occur once overall.

    Required columns: ``prompt_id``, ``prompt``, ``model``, ``quality``; ``source`` may be left out
    (it is then the file's name). A row with an empty ``quality`` is an unknown outcome: skipped and
    counted. Every other row is validated (see :func:`llmroute.data.validate.validate_logs`), so any
    bad row is an error naming file, row and field. Columns outside the schema are ignored and listed
    in the report's notes. Raises :class:`LogValidationError` for an unknown extension or unreadable file.
    """
    files = [str(p) for p in paths]
    parts: list[pd.DataFrame] = []
    row_files: list[str] = []
    row_numbers: list[int] = []
    extra: set[str] = set()
    skipped: dict[str, int] = {}
    notes: dict[str, int] = {}
    read = 0
    for file in files:
        frame, rows = read_long_file(file)
        if frame.empty and not len(frame.columns):
            continue
        read += len(frame)
        extra.update(str(c) for c in frame.columns if c not in COLUMNS)
        if "source" not in frame.columns:
            frame = frame.assign(source=Path(file).name)
            notes[NOTE_SOURCE] = notes.get(NOTE_SOURCE, 0) + len(frame)
        if "quality" in frame.columns:
            unknown = frame["quality"].map(_is_empty).to_numpy(dtype=bool)
            if unknown.any():
                skipped[SKIP_UNKNOWN] = skipped.get(SKIP_UNKNOWN, 0) + int(unknown.sum())
                rows = [r for r, u in zip(rows, unknown) if not u]
                frame = frame[~unknown].reset_index(drop=True)
        parts.append(validate_logs(frame, file, row_numbers=rows))
        row_files += [file] * len(frame)
        row_numbers += rows
    df = pd.concat(parts, ignore_index=True) if parts else empty_frame()
    ensure_unique_pairs(df, row_files, row_numbers)
    if extra:
        notes[NOTE_EXTRA.format(names=", ".join(sorted(extra)))] = len(extra)
    report = ImportReport(files=tuple(files), rows_read=read, rows_kept=len(df), skipped=skipped, notes=notes)
    return df, report


def _is_empty(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def read_long_file(file: str | Path) -> tuple[pd.DataFrame, list[int]]:
    """Read one long-format file as-is (no validation), with the row number of each record."""
    path = Path(file)
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise LogValidationError(
            str(file), None, None,
            f"unknown file extension {path.suffix or '(none)'!r}; expected one of {', '.join(EXTENSIONS)}",
        )
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
            frame = frame.where(frame != "", None)
            return frame, list(range(1, len(frame) + 1))
        if kind == "parquet":
            frame = pd.read_parquet(path)
            return frame, list(range(1, len(frame) + 1))
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LogValidationError(str(file), None, None, f"cannot read: {exc}") from exc
    return _parse_jsonl(str(file), text)


def _parse_jsonl(file: str, text: str) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict[str, object]] = []
    rows: list[int] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LogValidationError(file, line_no, None, f"expected a JSON object per line: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise LogValidationError(file, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
        records.append(obj)
        rows.append(line_no)
    return pd.DataFrame.from_records(records), rows

