"""One entry point for every log importer, and the Parquet log store read/write."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from llmroute.data.catalog import Catalog, load_catalog
from llmroute.data.llmrouter import import_llmrouter
from llmroute.data.long_format import import_long
from llmroute.data.routerbench import import_routerbench
from llmroute.data.schema import COLUMNS, ImportReport, LogValidationError
from llmroute.data.validate import validate_logs

FORMATS: tuple[str, ...] = ("routerbench", "llmrouter", "long")
PARQUET_COMPRESSION: Final[Literal["zstd"]] = "zstd"
PARQUET_COMPRESSION_LEVEL: Final = 19


def run_import(
    fmt: str, files: Sequence[Path], catalog: Catalog | None = None, **options: Any
) -> tuple[pd.DataFrame, ImportReport]:
    """Import ``files`` in format ``fmt`` ("routerbench", "llmrouter" or "long").

    For "llmrouter", ``files`` may mix score files and query files: ``.jsonl`` / ``.ndjson``
    files are query files, ``.json`` files score files, and any other file is told apart by its
    first character (``[`` = score list, ``{`` = query lines). ``catalog`` (default: the bundled
    one) prices LLMRouter's estimated costs; ``options`` go to the importer
    (``assumed_output_tokens`` for "llmrouter"; none for the others).
    Raises ValueError for an unknown format or option, :class:`LogValidationError` for bad files.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not files:
        raise ValueError("no input files given")
    allowed = {"llmrouter": {"assumed_output_tokens"}}.get(fmt, set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} not accepted by format {fmt!r}")
    if fmt == "routerbench":
        return import_routerbench(files)
    if fmt == "long":
        return import_long(files)
    scores, queries = split_llmrouter_files(files)
    if not scores:
        raise ValueError("format 'llmrouter' needs at least one score file (.json list of {question, scores})")
    return import_llmrouter(scores, queries, catalog if catalog is not None else load_catalog(), **options)


def split_llmrouter_files(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Separate LLMRouter score files from query files (see :func:`run_import`)."""
    scores: list[Path] = []
    queries: list[Path] = []
    for path in map(Path, files):
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            queries.append(path)
        elif suffix == ".json" or _first_char(path) == "[":
            scores.append(path)
        else:
            queries.append(path)
    return scores, queries


def _first_char(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as fh:
            while chunk := fh.read(4096):
                stripped = chunk.lstrip()
                if stripped:
                    return stripped[0]
    except (OSError, UnicodeDecodeError) as exc:
        raise LogValidationError(str(path), None, None, f"cannot read: {exc}") from exc
    return ""


def read_logs(path: str | Path) -> pd.DataFrame:
    """Read a Parquet log file and validate it against the schema."""
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise LogValidationError(str(path), None, None, f"cannot read: {exc}") from exc
    return validate_logs(df, str(path))


def write_logs(df: pd.DataFrame, path: str | Path) -> None:
    """Validate ``df`` and write it as zstd-compressed Parquet (parent folders are created)."""
    out = Path(path)
    checked = validate_logs(df, f"(logs being written to {out})")
    out.parent.mkdir(parents=True, exist_ok=True)
    checked[list(COLUMNS)].to_parquet(
        out, index=False, compression=PARQUET_COMPRESSION, compression_level=PARQUET_COMPRESSION_LEVEL
    )
