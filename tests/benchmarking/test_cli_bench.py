"""`llmroute bench run` through typer's CliRunner on the bench sub-app."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmroute.cli.bench import register
from llmroute.data.importers import read_logs
from tests.benchmarking.conftest import FIXTURES, counts
from tests.serving.servers import LiveServer


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group needs more than one command to keep the `bench` prefix
    register(app)
    return app


@pytest.mark.slow  # a whole run, resumed (3 s on a busy machine)
def test_bench_run_writes_logs_summary_and_plot_and_resumes(fake: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "bench" / "logs.parquet"
    args = [
        "bench", "run", "--task", str(FIXTURES / "arithmetic.yaml"), "--models", "det-good,det-bad,det-vary",
        "--out", str(out), "--catalog", str(FIXTURES / "catalog.yaml"), "--repeats", "2",
        "--base-url", f"det-good={fake.url}/v1", "--default-base-url", f"{fake.url}/v1", "--no-progress",
        "--backoff", "0.01",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    logs = read_logs(out)
    assert len(logs) == 9 and set(logs["model"]) == {"det-good", "det-bad", "det-vary"}
    assert (out.parent / "logs.summary.png").stat().st_size > 1000
    assert (out.parent / "logs.summary.csv").exists()
    assert "det-vary" in result.output and "18/18 calls scored" in result.output
    assert sum(counts(fake).values()) == 18
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0 and "18 reused from the journal" in again.output
    assert sum(counts(fake).values()) == 18  # nothing sent twice


def test_bench_run_errors(fake: LiveServer, tmp_path: Path) -> None:
    base = ["bench", "run", "--task", str(FIXTURES / "arithmetic.yaml"), "--out", str(tmp_path / "l.parquet"),
            "--catalog", str(FIXTURES / "catalog.yaml"), "--no-progress"]
    bad_model = CliRunner().invoke(_app(), [*base, "--models", "det-good,nope"])
    assert bad_model.exit_code == 2 and "not in the catalog" in bad_model.output
    bad_url = CliRunner().invoke(_app(), [*base, "--models", "det-good", "--base-url", "det-good"])
    assert bad_url.exit_code == 2 and "MODEL=URL" in bad_url.output


def test_bench_run_with_every_call_failing_exits_1_says_why_and_writes_nothing(tmp_path: Path) -> None:
    """Defect 5: all 24 calls failed, yet the run exited 0 silently with an empty Parquet and a plot."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    out = tmp_path / "bench" / "logs.parquet"
    args = [
        "bench", "run", "--task", str(FIXTURES / "arithmetic.yaml"), "--models", "det-good,det-bad",
        "--out", str(out), "--catalog", str(FIXTURES / "catalog.yaml"), "--no-progress",
        "--default-base-url", f"http://127.0.0.1:{dead}/v1", "--retries", "0", "--timeout", "2",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 1, result.output
    assert "none of the 6 calls returned a scored answer; nothing written" in result.output
    assert "x det-good: " in result.output and "x det-bad: " in result.output  # the reasons, per model
    assert not out.exists() and not (out.parent / "logs.summary.png").exists()
