"""``llmroute data ...``: commands that turn benchmark logs into the project's Parquet schema."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from llmroute.cli.options import fail
from llmroute.data.log_formats import format_names, formats_accepting, formats_help

# the importers need pandas (a quarter of a second or more): they are imported by the command itself,
# so that `llmroute --help` and argument errors answer at once
DEFAULT_ASSUMED_OUTPUT_TOKENS = 256  # == llmroute.data.llmrouter.DEFAULT_ASSUMED_OUTPUT_TOKENS (tested)

data_app = typer.Typer(
    help="Import and convert benchmark logs (one row per prompt x model outcome).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


ImportFormat = StrEnum("ImportFormat", {name: name for name in format_names()})  # type: ignore[misc]
"""Input formats of ``llmroute data import``: the registered ones (:mod:`llmroute.data.log_formats`)."""


@data_app.callback()
def _data() -> None:
    """Import and convert benchmark logs (one row per prompt x model outcome)."""


@data_app.command("import")
def import_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="Input files. For llmrouter, pass score files (.json) and query files (.jsonl) together.",
                       show_default=False),
    ],
    fmt: Annotated[
        ImportFormat,
        typer.Option("--format", "-f", help=f"Input format: {formats_help()}.", case_sensitive=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file (zstd-compressed).")],
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="Model catalog YAML used to price estimated costs (default: the bundled one).",
                     show_default=False),
    ] = None,
    assumed_output_tokens: Annotated[
        int | None,
        typer.Option("--assumed-output-tokens", min=0, show_default=False,
                     help=f"llmrouter only: answer length in tokens assumed when estimating cost "
                          f"(default {DEFAULT_ASSUMED_OUTPUT_TOKENS}).")
    ] = None,
    prompts: Annotated[
        int | None,
        typer.Option("--prompts", min=1, show_default=False,
                     help="Keep only the first N prompts (in order of appearance) with all their outcomes: a small "
                          "set for a quick first try."),
    ] = None,
) -> None:
    """Import benchmark logs, validate them, and write them as one Parquet file.

    Prints how many rows were read, kept and skipped (with the reason for every skip).
    Exits with code 2, printing the file, row and field at fault, when an input is invalid.

    \b
    Examples:
      llmroute data import --format routerbench arc_challenge_train.csv mbpp_train.csv --out train.parquet
      llmroute data import --format llmrouter train.json default_query_train.jsonl --out train.parquet
      llmroute data import --format long my_logs.jsonl --out logs.parquet
      llmroute data import --format long data/routerbench/train.parquet --prompts 300 --out small.parquet

    Long format: the columns of the schema (README); prompt_id, prompt, model and quality are required,
    source defaults to the file's name, and an empty quality is an unknown outcome (skipped, counted).
    """
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        fail(f"input file not found: {', '.join(missing)}")
    from llmroute.data.catalog import CatalogError, load_catalog
    from llmroute.data.importers import run_import, write_logs
    from llmroute.data.schema import LogValidationError

    options: dict[str, int] = {}
    if assumed_output_tokens is not None:
        accepting = formats_accepting("assumed_output_tokens")
        if fmt.value not in accepting:
            fail(f"--assumed-output-tokens only applies to --format {' or '.join(accepting)}")
        options["assumed_output_tokens"] = assumed_output_tokens
    try:
        cat = load_catalog(catalog) if catalog is not None else None
        df, report = run_import(fmt.value, files, catalog=cat, **options)
        if prompts is not None:
            keep = df["prompt_id"].drop_duplicates().head(prompts)
            df = df[df["prompt_id"].isin(keep)].reset_index(drop=True)
        write_logs(df, out)
    except (LogValidationError, CatalogError, ValueError) as exc:
        fail(str(exc))
    for line in report.lines():
        typer.echo(line)
    kept = f" (the first {df['prompt_id'].nunique()} prompts, --prompts)" if prompts is not None else ""
    typer.echo(f"wrote {len(df)} rows to {out}{kept}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main CLI."""
    app.add_typer(data_app, name="data")
