"""Import RouterBench's wide CSV files into the log schema.

A RouterBench file has one row per prompt: an unnamed index column, ``sample_id``, ``prompt`` (a
Python list literal of strings), ``eval_name``, and per model ``<model>`` (correctness 0/1, empty
when unknown), ``<model>|model_response`` (a list literal holding the answer) and
``<model>|total_cost`` (USD). Each (prompt, model) cell becomes one schema row.

Row numbers in errors count CSV data rows (the header is not counted: row 1 is the first record)
and the field is the CSV column at fault.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llmroute.data.schema import COLUMNS, ImportReport, LogValidationError, empty_frame
from llmroute.data.tokens import count_tokens_batch
from llmroute.data.validate import validate_sources

SOURCE = "routerbench"
SKIP_UNKNOWN = "outcome unknown (empty correctness cell)"
NOTE_CSV_ROWS = "CSV data rows read (rows read = CSV rows x models)"
NOTE_MULTI = "CSV rows whose prompt list has several elements (joined with a blank line)"
NOTE_REPEATED_ID = "CSV rows repeating a sample_id within the import (kept: their model cells do not overlap)"
NOTE_NO_COST = "rows kept without a cost (empty total_cost cell)"
_RESPONSE = "|model_response"
_COST = "|total_cost"
_TASK_ALIASES = {"winograde": "winogrande"}


@dataclass(frozen=True)
class _Cell:
    prompt_id: str
    prompt: str
    model: str
    quality: float
    cost: float | None
    response: str | None
    task: str | None
    row: int


def import_routerbench(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, ImportReport]:
    """Import one or more RouterBench wide CSV files.

    ``prompt_id`` is the ``sample_id``; a (prompt_id, model) pair that occurs twice in the
    import (in one file or across files) is an error naming both places, so import train and test
    files in separate calls. Prompts given as a list of several strings are joined with a blank
    line. Empty correctness cells (outcome unknown) are skipped and counted. ``task`` is
    ``eval_name`` lower-cased with ``_`` as ``-``; ``input_tokens`` / ``output_tokens`` are cl100k
    counts of prompt and answer; ``cost_usd`` is RouterBench's ``total_cost``
    (``cost_is_estimated`` False); ``latency_ms`` is null.
    """
    files = [str(p) for p in paths]
    cells: list[_Cell] = []
    cell_files: list[str] = []
    read = skipped = 0
    notes: Counter[str] = Counter()
    seen_ids: set[str] = set()
    for file in files:
        frame = _read_csv(file)
        models = _models(frame, file)
        read += len(frame) * len(models)
        notes[NOTE_CSV_ROWS] += len(frame)
        file_ids: set[str] = set()
        for i, rec in enumerate(frame.to_dict("records")):
            row = i + 1
            pid = _required_text(rec["sample_id"], file, row, "sample_id")
            prompt, parts = _parse_prompt(rec["prompt"], file, row)
            notes[NOTE_MULTI] += parts > 1
            notes[NOTE_REPEATED_ID] += pid in seen_ids or pid in file_ids
            file_ids.add(pid)
            task = _task(rec["eval_name"])
            for model in models:
                quality = _quality(rec[model], file, row, model)
                if quality is None:
                    skipped += 1
                    continue
                cost = _cost(rec[model + _COST], file, row, model + _COST)
                notes[NOTE_NO_COST] += cost is None
                response = _response(rec[model + _RESPONSE], file, row, model + _RESPONSE)
                cells.append(_Cell(pid, prompt, model, quality, cost, response, task, row))
                cell_files.append(file)
        seen_ids.update(file_ids)
    df = _to_frame(cells)
    df = validate_sources(df, cell_files, [c.row for c in cells])
    report = ImportReport(
        files=tuple(files),
        rows_read=read,
        rows_kept=len(df),
        skipped={SKIP_UNKNOWN: skipped} if skipped else {},
        notes={k: v for k, v in notes.items() if v},
    )
    return df, report


def _read_csv(file: str) -> pd.DataFrame:
    try:
        return pd.read_csv(file, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LogValidationError(file, None, None, f"cannot read: {exc}") from exc


def _models(frame: pd.DataFrame, file: str) -> list[str]:
    for col in ("sample_id", "prompt", "eval_name"):
        if col not in frame.columns:
            raise LogValidationError(file, None, col, f"missing column {col!r}; expected a RouterBench wide CSV")
    models = [c[: -len(_COST)] for c in frame.columns if c.endswith(_COST)]
    if not models:
        raise LogValidationError(file, None, None, "no '<model>|total_cost' columns; expected a RouterBench wide CSV")
    for model in models:
        for col in (model, model + _RESPONSE):
            if col not in frame.columns:
                raise LogValidationError(
                    file, None, col, f"missing column {col!r} (model {model!r} has a total_cost column)"
                )
    return models


def _required_text(value: str, file: str, row: int, field: str) -> str:
    if not value.strip():
        raise LogValidationError(file, row, field, "expected a non-empty value")
    return value


def _parse_list(value: str, file: str, row: int, field: str) -> list[str]:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise LogValidationError(
            file, row, field,
            f"expected a Python list literal of strings, got {value[:80]!r} ({exc.__class__.__name__})",
        ) from None
    if isinstance(parsed, str):
        return [parsed]
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        got = f"{type(parsed).__name__}: {value[:80]!r}"
        raise LogValidationError(file, row, field, f"expected a list of strings, got {got}")
    return parsed


def _parse_prompt(value: str, file: str, row: int) -> tuple[str, int]:
    parts = _parse_list(value, file, row, "prompt")
    text = "\n\n".join(parts)
    if not text.strip():
        raise LogValidationError(file, row, "prompt", "expected a non-empty prompt")
    return text, len(parts)


def _task(value: str) -> str | None:
    task = value.strip().lower().replace("_", "-").replace(" ", "-")
    return _TASK_ALIASES.get(task, task) or None


def _number(value: str, file: str, row: int, field: str, expected: str) -> float | None:
    if not value.strip():
        return None
    try:
        x = float(value)
    except ValueError:
        raise LogValidationError(file, row, field, f"expected {expected}, got {value!r}") from None
    if not math.isfinite(x):
        raise LogValidationError(file, row, field, f"expected {expected}, got {value!r}")
    return x


def _quality(value: str, file: str, row: int, field: str) -> float | None:
    expected = "a correctness score in [0, 1] (empty = unknown)"
    q = _number(value, file, row, field, expected)
    if q is not None and not 0.0 <= q <= 1.0:
        raise LogValidationError(file, row, field, f"expected {expected}, got {value!r}")
    return q


def _cost(value: str, file: str, row: int, field: str) -> float | None:
    expected = "a cost in USD >= 0"
    c = _number(value, file, row, field, expected)
    if c is not None and c < 0:
        raise LogValidationError(file, row, field, f"expected {expected}, got {value!r}")
    return c


def _response(value: str, file: str, row: int, field: str) -> str | None:
    if not value.strip():
        return None
    return "\n\n".join(_parse_list(value, file, row, field))


def _to_frame(cells: Sequence[_Cell]) -> pd.DataFrame:
    if not cells:
        return empty_frame()
    prompts = [c.prompt for c in cells]
    unique = list(dict.fromkeys(prompts))
    prompt_tokens = dict(zip(unique, count_tokens_batch(unique), strict=True))
    answered = [c.response for c in cells if c.response is not None]
    answer_tokens = iter(count_tokens_batch(answered))
    data = {
        "prompt_id": [c.prompt_id for c in cells],
        "prompt": prompts,
        "model": [c.model for c in cells],
        "quality": [c.quality for c in cells],
        "cost_usd": [c.cost for c in cells],
        "cost_is_estimated": [False] * len(cells),
        "input_tokens": [prompt_tokens[p] for p in prompts],
        "output_tokens": [next(answer_tokens) if c.response is not None else None for c in cells],
        "latency_ms": [None] * len(cells),
        "task": [c.task for c in cells],
        "response": [c.response for c in cells],
        "source": [SOURCE] * len(cells),
        "created_at": [None] * len(cells),
    }
    return pd.DataFrame(data, columns=list(COLUMNS))

