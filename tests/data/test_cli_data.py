from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llmroute.cli.data import data_app
from llmroute.data.importers import read_logs

runner = CliRunner()


def test_import_success(rb_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "logs.parquet"
    result = runner.invoke(data_app, ["import", "--format", "routerbench", *map(str, rb_files), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows read: 429" in result.stdout and "rows kept: 418" in result.stdout
    assert "outcome unknown (empty correctness cell)" in result.stdout
    assert len(read_logs(out)) == 418


def test_import_llmrouter_with_options(lr_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr.parquet"
    args = ["import", "-f", "llmrouter", str(lr_dir / "scores.json"), str(lr_dir / "queries.jsonl"),
            "-o", str(out), "--assumed-output-tokens", "10"]
    result = runner.invoke(data_app, args)
    assert result.exit_code == 0, result.output
    assert len(read_logs(out)) == 180


def test_import_error_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "logs.txt"
    bad.write_text("x")
    out = tmp_path / "out.parquet"
    result = runner.invoke(data_app, ["import", "--format", "long", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "unknown file extension" in result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_option_for_wrong_format_and_bad_catalog(rb_files: list[Path], tmp_path: Path) -> None:
    out = str(tmp_path / "o.parquet")
    result = runner.invoke(data_app, ["import", "-f", "routerbench", str(rb_files[1]), "-o", out,
                                      "--assumed-output-tokens", "5"])
    assert result.exit_code == 2 and "llmrouter" in result.stderr
    cat = tmp_path / "cat.yaml"
    cat.write_text("models: 3\n")
    result = runner.invoke(data_app, ["import", "-f", "llmrouter", str(rb_files[1]), "-o", out, "--catalog", str(cat)])
    assert result.exit_code == 2 and str(cat) in result.stderr


def test_help() -> None:
    result = runner.invoke(data_app, ["import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in ("routerbench", "llmrouter", "long", "--out", "--catalog", "--assumed-output-tokens"):
        assert word in result.stdout
