"""The CLI answers --help and argument errors without importing the heavy libraries (defect 7: ~8 s for
--help and ~30 s before an argument error on a busy machine), checked by what a fresh process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "torch", "sentence_transformers", "transformers", "pandas", "numpy", "pyarrow", "lightgbm", "sklearn", "mlflow",
    "fastapi", "sqlalchemy", "dask",
)

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
        (["logs", "export", "--out", "x.parquet", "--db", "sqlite:///missing.sqlite"], "no decision log at missing.sqlite"),
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


EVERY_HELP = f"HEAVY = {HEAVY!r}\n" + """
import json, sys
from typer.main import get_command
from llmroute.cli import app

def walk(command, path):
    yield path
    for name in getattr(command, "commands", {}):
        yield from walk(command.commands[name], [*path, name])

seen, offenders = [], {}
for path in walk(get_command(app), []):
    try:
        app([*path, "--help"], prog_name="llmroute")
    except SystemExit as exc:
        assert exc.code == 0, (path, exc.code)
    seen.append(" ".join(path))
    for m in HEAVY:
        if m in sys.modules and m not in offenders:
            offenders[m] = " ".join(path)
print("PROBE" + json.dumps({"seen": seen, "offenders": offenders}))
"""


def test_every_commands_help_imports_nothing_heavy(tmp_path: Path) -> None:
    """`--help` of the root, of every group and of every command, in one fresh process: none of them (nor
    building the app) imports a heavy library; a command added later is walked too."""
    env = {**os.environ, "LLMROUTE_HOME": str(tmp_path / "home"), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-c", EVERY_HELP], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    res = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))[len("PROBE"):])
    for command in ("", "train", "route", "serve", "retrain", "data import", "logs export", "ab report",
                    "bench run", "budgets simulate", "promote", "offpolicy", "replay-server"):
        assert command in res["seen"]
    assert res["offenders"] == {}, f"first --help that imported each heavy module: {res['offenders']}"


def test_python_m_and_the_console_script_import_nothing_heavy(tmp_path: Path) -> None:
    """`python -X importtime -m llmroute.cli --help` (the package's __main__) lists no heavy module, and the
    console script's entry point (pyproject's [project.scripts]) is the same app."""
    import tomllib

    env = {**os.environ, "LLMROUTE_HOME": str(tmp_path / "home"), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmroute.cli", "--help"], capture_output=True,
                         text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "Usage: python -m llmroute.cli" in out.stdout and "learned LLM router" in out.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "llmroute.cli.root" in imported  # the probe sees the imports
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY) == []

    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["llmroute"].partition(":")
    code = f"import sys; from {module} import {func} as main; sys.argv = ['llmroute', '--help']; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "Usage: llmroute [OPTIONS] COMMAND" in out.stdout and "budgets" in out.stdout


def test_every_command_module_registers_the_same_way() -> None:
    """Each module of the cli package that defines commands adds them with ``register(app)``, and the root
    registers every one of them."""
    import importlib
    import pkgutil

    import llmroute.cli
    from llmroute.cli.root import COMMAND_GROUPS

    modules = [importlib.import_module(f"llmroute.cli.{m.name}") for m in pkgutil.iter_modules(llmroute.cli.__path__)]
    with_commands = {m.__name__ for m in modules if hasattr(m, "register")}
    assert {"llmroute.cli.root", "llmroute.cli.data", "llmroute.cli.serve", "llmroute.cli.budgets"} <= with_commands
    assert {g.__module__ for g in COMMAND_GROUPS} == with_commands


def test_shared_options_and_the_error_exit_are_defined_once() -> None:
    """``--home``, ``--tracking-uri``, ``--quiet`` and ``--db`` are declared in cli/options.py only, and no
    command module defines its own error exit (``fail``)."""
    import ast

    import llmroute.cli

    folder = Path(llmroute.cli.__file__).parent
    declared: dict[str, list[str]] = {}
    exits: list[str] = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Option":
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in ("--home", "--tracking-uri", "--quiet", "--db"):
                        declared.setdefault(arg.value, []).append(path.name)
            if isinstance(node, ast.FunctionDef) and node.name in ("fail", "_fail"):
                exits.append(path.name)
    assert declared == {o: ["options.py"] for o in ("--home", "--tracking-uri", "--quiet", "--db")}
    assert exits == ["options.py"]


def test_fail_prints_the_error_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from llmroute.cli.options import fail

    with pytest.raises(typer.Exit) as info:
        fail("--logs: x.parquet does not exist")
    assert info.value.exit_code == 2
    assert capsys.readouterr().err == "error: --logs: x.parquet does not exist\n"
