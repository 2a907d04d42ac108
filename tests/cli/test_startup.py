"""The CLI answers --help and argument errors without importing the heavy libraries (defect 7: ~8 s for
--help and ~30 s before an argument error on a busy machine), checked by what a fresh process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sentence_transformers", "transformers", "pandas", "lightgbm", "sklearn", "mlflow", "fastapi")

PROBE = """
import json, sys
from llmroute.cli import app
try:
    app(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in %r if m in sys.modules)
print("PROBE" + json.dumps({"code": code, "heavy": heavy}))
""" % (HEAVY,)  # noqa: UP031 - the probe's own source is full of braces


def probe(*args: str, tmp_path: Path) -> tuple[int, list[str], str]:
    env = {**os.environ, "LLMROUTE_HOME": str(tmp_path / "home")}
    env.pop("LLMROUTE_CATALOG", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))
    res = json.loads(line[len("PROBE"):])
    return res["code"], res["heavy"], out.stdout + out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--help"], "learned LLM router"),
        (["route", "--help"], "--catalog"),
        (["train", "--help"], "--quiet"),
        (["route", "hello", "--target", "abc"], "quality target must be a share of the best model"),
        (["route", "hello", "--target", "151%"], "151% is out of range"),
        (["route", "hello", "--confidence", "2"], "--confidence must be within [0, 1]"),
        (["route", "hello", "--model", "no-such-router-folder"], "is not a saved router"),
        (["train", "--logs", "missing.parquet"], "--logs: missing.parquet does not exist"),
        (["train", "--logs", "README.md", "--target", "95"], "did you mean '95%'"),
        (["evaluate", "--logs", "missing.parquet", "--report-dir", "r"], "--logs: missing.parquet does not exist"),
        (["data", "import", "-f", "long", "missing.csv", "--out", "x.parquet"], "input file not found: missing.csv"),
    ],
)
def test_help_and_argument_errors_import_nothing_heavy(args: list[str], message: str, tmp_path: Path) -> None:
    code, heavy, output = probe(*args, tmp_path=tmp_path)
    assert message in output
    assert code == (0 if "--help" in args else 2), output
    assert heavy == [], f"{args} imported {heavy}"


def test_data_help_default_matches_the_importer() -> None:
    from llmroute.cli.data import DEFAULT_ASSUMED_OUTPUT_TOKENS
    from llmroute.data.llmrouter import DEFAULT_ASSUMED_OUTPUT_TOKENS as IMPORTER

    assert DEFAULT_ASSUMED_OUTPUT_TOKENS == IMPORTER
