"""`ab report --track`: the report lands in MLflow with its headline numbers and the arms' router versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmroute.cli import app
from tests.abtest.conftest import WriteExperiment
from tests.abtest.test_report import _log


@pytest.mark.slow  # an MLflow run
def test_report_is_logged_to_mlflow(tmp_path: Path, write_experiment: WriteExperiment, _home: Path) -> None:
    from mlflow import MlflowClient

    exp = write_experiment(analysis={"min_requests_per_arm": 10, "n_boot": 200})
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    _log(url, 30)
    res = CliRunner().invoke(app, ["ab", "report", str(exp), "--db", url, "--out", str(tmp_path / "r"), "--track",
                                   "--format", "none"])
    assert res.exit_code == 0, res.output
    run_id = res.output.strip().splitlines()[-1].removeprefix("logged to MLflow run ")
    uri = f"sqlite:///{(_home / 'mlflow.db').resolve()}"
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.info.run_name == "ab:exp:live"
    tags = run.data.tags
    assert tags["ab.experiment"] == "exp" and tags["ab.control"] == "control"
    assert tags["ab.arm.cheap.router_version"] == "always:mistralai/mistral-7b-chat"
    assert tags["ab.arm.cheap.policy"] == "always mistralai/mistral-7b-chat"
    m = run.data.metrics
    assert m["cheap.requests"] == 30 and abs(m["cheap.mean_cost_usd"] - 0.001) < 1e-12
    assert abs(m["cheap.cost_diff"] + 0.009) < 1e-12 and "cheap.quality_p" in m
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id, "ab")}
    assert {"ab/report.json", "ab/report.md", "ab/report.html", "ab/arms.png", "ab/differences.png"} <= artifacts
    no_out = CliRunner().invoke(app, ["ab", "report", str(exp), "--db", url, "--track"])
    assert no_out.exit_code == 2 and "give --out" in no_out.output
