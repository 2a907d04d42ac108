"""The log import formats: a name -> importer registry that ``llmroute data import --format`` is built from.

Every importer has one signature, :class:`Importer`: ``importer(files, **options) -> (frame, report)``,
the frame in the log schema (:mod:`llmroute.data.schema`) and an
:class:`~llmroute.data.schema.ImportReport` accounting for every row read. A format is registered as a
:class:`LogFormat` (name, one-line description for ``--help``, the keyword options it accepts, and the
importer or its ``"module:function"`` path, imported only when the format is used, so that the CLI can
list the formats without importing pandas). :func:`llmroute.data.importers.run_import` runs one by name.

Built-in formats: ``routerbench`` (:func:`llmroute.data.routerbench.import_routerbench`), ``llmrouter``
(:func:`llmroute.data.llmrouter.import_llmrouter_files`) and ``long``
(:func:`llmroute.data.long_format.import_long`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from llmroute.data.schema import ImportReport


class Importer(Protocol):
    """Reads ``files`` (every one of them, in order) into one schema frame and its import report.
    Raises :class:`~llmroute.data.schema.LogValidationError` naming file, row and field for bad input,
    ValueError for bad options."""

    def __call__(self, files: Sequence[Path], /, **options: Any) -> tuple[pd.DataFrame, ImportReport]: ...


@dataclass(frozen=True)
class LogFormat:
    """One import format (see module docstring). ``importer`` is the function or its
    ``"package.module:function"`` path; ``options`` the keyword options it accepts (any other is refused
    by :func:`llmroute.data.importers.run_import` before the importer runs)."""

    name: str
    description: str
    importer: Importer | str
    options: frozenset[str] = field(default_factory=frozenset)

    def load(self) -> Importer:
        """The importer function (imports its module on first use)."""
        if not isinstance(self.importer, str):
            return self.importer
        module, _, attr = self.importer.partition(":")
        fn: Importer = getattr(importlib.import_module(module), attr)
        return fn


_FORMATS: dict[str, LogFormat] = {
    f.name: f
    for f in (
        LogFormat("routerbench", "wide CSV", "llmroute.data.routerbench:import_routerbench"),
        LogFormat("llmrouter", "score .json + query .jsonl", "llmroute.data.llmrouter:import_llmrouter_files",
                  frozenset({"catalog", "assumed_output_tokens"})),
        LogFormat("long", "the schema itself as .csv, .jsonl or .parquet", "llmroute.data.long_format:import_long"),
    )
}
BUILTIN_FORMATS: tuple[str, ...] = tuple(_FORMATS)


def register_format(fmt: LogFormat) -> LogFormat:
    """Register ``fmt`` under its name. Raises ValueError when the name is empty or taken by another
    format (registering an equal format again is a no-op)."""
    if not fmt.name:
        raise ValueError("an import format needs a non-empty name")
    known = _FORMATS.get(fmt.name)
    if known is not None and known != fmt:
        raise ValueError(f"import format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove the format registered as ``name`` (the built-ins cannot be removed)."""
    if name in BUILTIN_FORMATS:
        raise ValueError(f"the built-in import format {name!r} cannot be unregistered")
    _FORMATS.pop(name, None)


def format_names() -> tuple[str, ...]:
    """The registered format names, built-ins first."""
    return tuple(_FORMATS)


def get_format(name: str) -> LogFormat:
    """The format registered as ``name``; ValueError naming the registered formats otherwise."""
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise ValueError(f"unknown import format {name!r}; expected one of {', '.join(_FORMATS)}")
    return fmt


def formats_help() -> str:
    """'name (description), ...' for every registered format, for ``--format``'s help."""
    return ", ".join(f"{f.name} ({f.description})" for f in _FORMATS.values())


def formats_accepting(option: str) -> tuple[str, ...]:
    """The registered formats whose importer accepts the keyword ``option``."""
    return tuple(f.name for f in _FORMATS.values() if option in f.options)

