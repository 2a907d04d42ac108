"""The benchmark-log schema: one row per (prompt, model) outcome.

Every importer produces a :class:`pandas.DataFrame` with exactly :data:`COLUMNS`, in this order,
stored as Parquet. ``quality`` is always known (rows whose outcome is unknown are skipped and counted
by the importer); everything marked nullable may be missing.

| column            | type            | meaning                                                         |
|-------------------|-----------------|-----------------------------------------------------------------|
| prompt_id         | string          | stable id of the prompt within its source                       |
| prompt            | string          | the full prompt text sent to the model                          |
| model             | string          | model name, as in the model catalog                             |
| quality           | float64 [0, 1]  | how well the answer met the task (1 = correct)                  |
| cost_usd          | float64, null   | USD cost of the call                                            |
| cost_is_estimated | bool            | True when cost comes from catalog prices x counted tokens       |
| input_tokens      | Int64, null     | prompt tokens (counted with cl100k_base: approximate for        |
|                   |                 | non-OpenAI models)                                              |
| output_tokens     | Int64, null     | answer tokens (same caveat)                                     |
| latency_ms        | float64, null   | wall-clock latency of the call                                  |
| task              | string, null    | task type (e.g. "mbpp", "winogrande")                           |
| response          | string, null    | the model's answer text                                         |
| source            | string          | where the row came from (e.g. "routerbench", "llmrouter")       |
| created_at        | timestamp, null | when the call was made (UTC)                                    |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

COLUMNS: tuple[str, ...] = (
    "prompt_id",
    "prompt",
    "model",
    "quality",
    "cost_usd",
    "cost_is_estimated",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "task",
    "response",
    "source",
    "created_at",
)

REQUIRED: tuple[str, ...] = ("prompt_id", "prompt", "model", "quality", "source")

# Text columns keep their characters in Arrow buffers (as Parquet reads them): a million prompts held as
# Python strings took ~4 GiB more than the file's ~1.7 GiB of text, on reading alone.
TEXT = "string[pyarrow]"

DTYPES: dict[str, str] = {
    "prompt_id": TEXT,
    "prompt": TEXT,
    "model": TEXT,
    "quality": "float64",
    "cost_usd": "float64",
    "cost_is_estimated": "bool",
    "input_tokens": "Int64",
    "output_tokens": "Int64",
    "latency_ms": "float64",
    "task": TEXT,
    "response": TEXT,
    "source": TEXT,
    "created_at": "datetime64[ns, UTC]",
}


class LogValidationError(ValueError):
    """Bad input in a log file: names the file, the row (1-based, as a user counts) and the field."""

    def __init__(self, file: str, row: int | None, field: str | None, message: str) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.message = message
        where = file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ImportReport:
    """What an importer read, kept and skipped (with a count per reason).

    ``rows_read == rows_kept + sum(skipped.values())``: every row read is either kept or counted
    under a reason. ``notes`` holds informational counts about kept rows (e.g. rows whose task could
    not be found); they never change the row accounting.
    """

    files: tuple[str, ...]
    rows_read: int
    rows_kept: int
    skipped: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"files: {', '.join(self.files)}",
            f"rows read: {self.rows_read}",
            f"rows kept: {self.rows_kept}",
        ]
        total_skipped = sum(self.skipped.values())
        out.append(f"rows skipped: {total_skipped}")
        for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:>7}  {reason}")
        if self.notes:
            out.append("notes:")
            for note, n in self.notes.items():
                out.append(f"  {n:>7}  {note}")
        return out


def empty_frame() -> pd.DataFrame:
    """An empty frame with the schema's columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})
