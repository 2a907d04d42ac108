"""The import-format registry: one importer signature, run_import and the CLI's --format built from it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest

from llmroute.data import log_formats
from llmroute.data.importers import read_logs, run_import
from llmroute.data.log_formats import LogFormat, format_names, get_format, register_format, unregister_format
from llmroute.data.schema import ImportReport, LogValidationError

REPO = Path(__file__).resolve().parents[2]


def import_tsv(files: Sequence[Path], *, source: str = "tsv") -> tuple[pd.DataFrame, ImportReport]:
    """A third format for the tests: tab-separated prompt_id, prompt, model, quality (header line)."""
    from llmroute.data.long_format import import_long

    frames = []
    for f in files:
        df = pd.read_csv(f, sep="\t", dtype={"prompt_id": str})
        frames.append(df.assign(source=source))
    tmp = Path(files[0]).with_suffix(".as-long.jsonl")
    pd.concat(frames).to_json(tmp, orient="records", lines=True)
    out, report = import_long([tmp])
    return out, ImportReport(tuple(map(str, files)), report.rows_read, report.rows_kept, report.skipped, report.notes)


TSV = LogFormat("test-tsv", "tab-separated prompt_id, prompt, model, quality", import_tsv, frozenset({"source"}))


@pytest.fixture
def tsv(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs.tsv"
    path.write_text("prompt_id\tprompt\tmodel\tquality\np1\tWhat is 2+2?\tm-a\t1.0\np1\tWhat is 2+2?\tm-b\t0.0\n")
    register_format(TSV)
    try:
        yield path
    finally:
        unregister_format(TSV.name)


def test_a_registered_format_is_run_by_name_with_its_options(tsv: Path) -> None:
    assert format_names()[:3] == ("routerbench", "llmrouter", "long") and "test-tsv" in format_names()
    df, report = run_import("test-tsv", [tsv], source="mine")
    assert report.rows_kept == len(df) == 2 and set(df["source"]) == {"mine"} and report.files == (str(tsv),)
    with pytest.raises(ValueError, match=r"option\(s\) assumed_output_tokens not accepted by format 'test-tsv'"):
        run_import("test-tsv", [tsv], assumed_output_tokens=3)


def test_the_builtin_importers_share_one_signature(tmp_path: Path) -> None:
    fixtures = REPO / "tests" / "fixtures"
    lr = fixtures / "llmrouter"
    for name, files in (("routerbench", [fixtures / "routerbench" / "mbpp_train.csv"]),
                        ("llmrouter", [lr / "scores.json", lr / "queries.jsonl"])):
        df, report = get_format(name).load()(files)
        assert report.rows_kept == len(df) > 0 and report.files
    with pytest.raises(LogValidationError, match="unknown file extension"):
        get_format("long").load()([tmp_path / "x.txt"])


def test_the_registry_refuses_clashes_and_names_the_formats() -> None:
    with pytest.raises(ValueError, match="'long' is already registered"):
        register_format(LogFormat("long", "x", import_tsv))
    with pytest.raises(ValueError, match="cannot be unregistered"):
        unregister_format("routerbench")
    with pytest.raises(ValueError, match="unknown import format 'csv'; expected one of routerbench, llmrouter, long"):
        get_format("csv")
    assert log_formats.formats_accepting("assumed_output_tokens") == ("llmrouter",)


@pytest.mark.slow  # a subprocess importing the CLI: 20 s on a busy machine
def test_the_cli_format_choices_come_from_the_registry(tmp_path: Path) -> None:
    """A format registered before the CLI is built is one of --format's choices, with its description,
    and the command runs it."""
    tsv = tmp_path / "logs.tsv"
    tsv.write_text("prompt_id\tprompt\tmodel\tquality\np1\tWhat is 2+2?\tm-a\t1.0\n")
    out = tmp_path / "out.parquet"
    script = (
        "import sys, typer\n"
        "from llmroute.data.log_formats import register_format\n"
        "from tests.data.test_log_formats import TSV\n"
        "register_format(TSV)\n"
        "from llmroute.cli.data import data_app\n"
        "command = typer.main.get_command(data_app)\n"
        "command.main(['import', '--help'], prog_name='llmroute data', standalone_mode=False)\n"
        "print('=' * 20)\n"
        "command.main(sys.argv[1:], prog_name='llmroute data')\n"
    )
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    run = subprocess.run([sys.executable, "-c", script, "import", "--format", "test-tsv", str(tsv), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    helptext, _, output = run.stdout.partition("=" * 20)
    assert "test-tsv (tab-separated prompt_id, prompt, model, quality)" in helptext
    assert len(read_logs(out)) == 1 and "wrote 1 rows" in output
