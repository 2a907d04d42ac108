"""Parquet export (store API and ``llmroute logs export``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from llmroute.cli.logs import register
from llmroute.data.decision_log import DecisionLogStore, default_db_url
from llmroute.data.decision_log.export import JOINED_SCHEMA
from tests.decision_log.helpers import T0, decision, feedback, outcome


def _fill(store: DecisionLogStore, n: int) -> None:
    store.write_many([decision(i) for i in range(n)])
    store.write_many([outcome(i) for i in range(0, n, 2)])
    store.write_many([feedback(i, 0.5) for i in range(0, n, 3)])


def test_export_parquet_streams_batches_and_counts_rows(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "exp" / "log.parquet"
    with DecisionLogStore(sqlite_url) as store:
        _fill(store, 23)
        assert store.export_parquet(out, batch_size=5) == 23
    pf = pq.ParquetFile(out)
    assert pf.schema_arrow == JOINED_SCHEMA
    assert pf.metadata.num_rows == 23 and pf.metadata.num_row_groups == 5  # one row group per batch
    t = pf.read()
    assert t.column("outcome_model").null_count == 23 - 12
    assert t.column("quality").null_count == 23 - 8
    assert not out.with_name("log.parquet.partial").exists()


def test_export_of_an_empty_log_is_a_valid_empty_file(sqlite_url: str, tmp_path: Path) -> None:
    with DecisionLogStore(sqlite_url) as store:
        assert store.export_parquet(tmp_path / "e.parquet") == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        pass

    register(app)
    return app


def test_cli_export_with_since(sqlite_url: str, tmp_path: Path) -> None:
    with DecisionLogStore(sqlite_url) as store:
        _fill(store, 10)
    out = tmp_path / "x.parquet"
    since = (T0 + timedelta(seconds=4)).isoformat()
    result = CliRunner().invoke(_app(), ["logs", "export", "--db", sqlite_url, "--format", "parquet",
                                         "--out", str(out), "--since", since])
    assert result.exit_code == 0, result.output
    assert "wrote 6 decisions" in result.output
    assert pq.read_table(out).column("decision_id").to_pylist() == [f"d{i:06d}" for i in range(4, 10)]


def test_cli_export_defaults_to_the_log_under_home(_home: Path, tmp_path: Path) -> None:
    with DecisionLogStore(default_db_url(_home)) as store:
        _fill(store, 3)
    out = tmp_path / "y.parquet"
    result = CliRunner().invoke(_app(), ["logs", "export", "--out", str(out), "--since", "2026-01-01"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 3


def test_cli_export_errors_name_the_problem(tmp_path: Path) -> None:
    missing = CliRunner().invoke(_app(), ["logs", "export", "--out", str(tmp_path / "z.parquet")])
    assert missing.exit_code == 2 and "no decision log at" in missing.output
    bad = CliRunner().invoke(_app(), ["logs", "export", "--db", f"sqlite:///{tmp_path}/a.sqlite",
                                      "--out", str(tmp_path / "z.parquet"), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output
