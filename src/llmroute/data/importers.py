"""One entry point for every log importer, and the Parquet log store read/write."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from llmroute.data.catalog import Catalog
from llmroute.data.llmrouter import split_llmrouter_files
from llmroute.data.log_formats import get_format
from llmroute.data.schema import COLUMNS, ImportReport, LogValidationError
from llmroute.data.validate import validate_logs

__all__ = [
    "PARQUET_COMPRESSION", "PARQUET_COMPRESSION_LEVEL", "read_logs", "run_import", "split_llmrouter_files",
    "write_logs",
]

PARQUET_COMPRESSION: Final[Literal["zstd"]] = "zstd"
PARQUET_COMPRESSION_LEVEL: Final = 19


def run_import(
    fmt: str, files: Sequence[Path], catalog: Catalog | None = None, **options: Any
) -> tuple[pd.DataFrame, ImportReport]:
    """Import ``files`` with the importer registered as format ``fmt`` (:mod:`llmroute.data.log_formats`:
    "routerbench", "llmrouter", "long" and any registered since).

    ``options`` go to the importer; an option the format does not declare is refused before anything is
    read. ``catalog`` is passed on to formats that price estimated costs from it (for "llmrouter":
    default the bundled catalog) and ignored by the others. For "llmrouter", ``files`` may mix score
    files and query files (:func:`llmroute.data.llmrouter.split_llmrouter_files`).
    Raises ValueError for an unknown format or option, :class:`LogValidationError` for bad files.
    """
    spec = get_format(fmt)
    if not files:
        raise ValueError("no input files given")
    unknown = sorted(set(options) - (spec.options - {"catalog"}))
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} not accepted by format {fmt!r}")
    if catalog is not None and "catalog" in spec.options:
        options["catalog"] = catalog
    return spec.load()([Path(f) for f in files], **options)


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
