"""End to end through the command line: import, train, evaluate, route (in-process, offline)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmroute.cli import app
from llmroute.data.importers import read_logs
from tests.router.helpers import FIXTURES, ROUTERBENCH, ROUTERBENCH_MODELS, write_slice

runner = CliRunner()
HEADLINE_KEYS = ("aiq", "cost_at_parity_ratio", "cost_at_95_ratio", "quality_at_equal_cost")


def invoke(*args: str):
    return runner.invoke(app, list(args))


@dataclass
class Pipeline:
    home: Path
    report_dir: Path
    train: object
    evaluate: object


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    base = tmp_path_factory.mktemp("e2e")
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMROUTE_HOME", str(home))
        train_path = write_slice(ROUTERBENCH / "train.parquet", base / "slice_train.parquet", 200, seed=11)
        test_path = write_slice(ROUTERBENCH / "test.parquet", base / "slice_test.parquet", 120, seed=12)
        trained = invoke(
            "train", "--logs", str(train_path), "--embedder", "minilm", "--home", str(home), "--no-track"
        )
        assert trained.exit_code == 0, trained.output
        report_dir = base / "rep"
        evaluated = invoke(
            "evaluate", "--logs", str(test_path), "--report-dir", str(report_dir), "--bootstrap", "50",
            "--home", str(home),
        )
        assert evaluated.exit_code == 0, evaluated.output
    return Pipeline(home, report_dir, trained, evaluated)


@pytest.mark.slow
def test_data_import_routerbench_fixtures(tmp_path: Path) -> None:
    files = sorted((FIXTURES / "routerbench").glob("*.csv"))
    out = tmp_path / "imported.parquet"
    result = invoke("data", "import", "--format", "routerbench", *map(str, files), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote 418 rows to {out}" in result.stdout
    df = read_logs(out)
    assert set(df["task"].dropna()) == {"arc-challenge", "mbpp", "winogrande"}
    assert set(df["model"]) <= set(ROUTERBENCH_MODELS)


@pytest.mark.slow
def test_train_writes_a_router(pipeline: Pipeline) -> None:
    out = pipeline.train.stdout  # type: ignore[attr-defined]
    assert "training on 200 prompts x 11 models" in out and "saved router" in out
    latest = Path((pipeline.home / "routers" / "LATEST").read_text().strip())
    assert (latest / "router.json").exists()
    assert json.loads((latest / "router.json").read_text())["embedder"]["spec"] == "minilm"


@pytest.mark.slow
def test_evaluate_writes_the_report(pipeline: Pipeline) -> None:
    rep = pipeline.report_dir
    report = json.loads((rep / "report.json").read_text())
    routers = report["routers"]
    for name in ("learned", "knn", "per_task_static"):
        assert name in routers, sorted(routers)
        for key in HEADLINE_KEYS:
            assert key in routers[name], (name, key)
        assert 0.0 <= routers[name]["aiq"] <= 1.0
    for key in ("apgr", "cpt50", "cpt80"):
        assert key in routers["learned"]
    assert "oracle" in routers and f"always:{ROUTERBENCH_MODELS[0]}" in routers
    assert report["data"]["prompts_scored"] + report["data"]["prompts_left_out_unknown_outcome"] == 120
    assert report["data"]["models"] == list(ROUTERBENCH_MODELS)
    assert [t["target"] for t in report["target_attainment"]] == [
        "90% of the best model", "95% of the best model", "100% of the best model",
    ]
    md = (rep / "report.md").read_text()
    assert md.startswith("# llmroute evaluation: slice_test.parquet") and "| learned |" in md
    png = rep / "cost_quality.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = pipeline.evaluate.stdout  # type: ignore[attr-defined]
    assert "learned" in out and "wrote" in out


@pytest.mark.slow
def test_route_prints_a_json_decision(pipeline: Pipeline) -> None:
    result = invoke("route", "Write a python function that checks whether a number is prime.",
                    "--home", str(pipeline.home))
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["model"] in ROUTERBENCH_MODELS
    assert [c["model"] for c in decision["candidates"]] == list(ROUTERBENCH_MODELS)
    assert all(0.0 <= c["probability"] <= 1.0 and c["expected_cost_usd"] > 0 for c in decision["candidates"])
    assert decision["reason"] and decision["router_version"]


@pytest.mark.slow
def test_route_with_no_eligible_model_exits_2_without_traceback(pipeline: Pipeline) -> None:
    result = invoke("route", "Hello there", "--capability", "vision", "--home", str(pipeline.home))
    assert result.exit_code == 2, result.output
    assert "error: no model satisfies the request's constraints" in result.stderr
    assert "lacks required capabilities" in result.stderr
    result = invoke("route", "Hello there", "--allow", "nonexistent-model", "--home", str(pipeline.home))
    assert result.exit_code == 2, result.output
    assert "error: unknown model 'nonexistent-model' in allowed_models" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command path of a (typer/click) group."""
    out = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):
            out += _commands(cmd, (*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_has_help() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"train", "evaluate", "route", "data", "data import"} <= names
    result = invoke("--help")
    assert result.exit_code == 0 and "learned LLM router" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and "--help" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "lots"), "quality target must be a share of the best model"),
        (("--target", "150"), "out of range"),
        (("--confidence", "2"), "confidence must be within [0, 1]"),
        (("--capability", "vision"), "lacks required capabilities ['vision']"),
    ],
)
def test_route_bad_requests_exit_2_without_traceback(pipeline: Pipeline, args: tuple[str, ...], message: str) -> None:
    result = invoke("route", "Hello there", *args, "--home", str(pipeline.home))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("error: ") == 1 and message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_route_reads_the_prompt_from_stdin(pipeline: Pipeline) -> None:
    result = runner.invoke(app, ["route", "-", "--home", str(pipeline.home), "--task", "mbpp"],
                           input="Write a function to add two numbers.")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["task_hint"] == "mbpp" and decision["model"] in ROUTERBENCH_MODELS


def test_route_without_a_trained_router_fails_cleanly(tmp_path: Path) -> None:
    result = invoke("route", "Hello there", "--home", str(tmp_path / "empty-home"))
    assert result.exit_code == 2, result.output
    assert "run `llmroute train` first" in result.stderr
    assert isinstance(result.exception, SystemExit)


def test_evaluate_without_a_trained_router_fails_cleanly(tmp_path: Path) -> None:
    result = invoke(
        "evaluate", "--logs", str(ROUTERBENCH / "test.parquet"), "--report-dir", str(tmp_path / "rep"),
        "--home", str(tmp_path / "empty-home"),
    )
    assert result.exit_code == 2, result.output
    assert "run `llmroute train` first" in result.stderr
    assert not (tmp_path / "rep").exists()
