"""`ab simulate` on a small slice of held-out logs: assignment, outcomes from the logs, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmroute.abtest.assignment import arm_for_bucket, bucket
from llmroute.abtest.experiment import load_experiment
from llmroute.abtest.render import write_report
from llmroute.abtest.simulate import simulate
from llmroute.data.importers import read_logs, write_logs
from llmroute.data.wide import to_wide
from tests.abtest.conftest import WriteExperiment
from tests.serving.conftest import REPO, Trained

N_PROMPTS = 60


@pytest.fixture(scope="module")
def test_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60 prompts of the bundled RouterBench test split."""
    df = read_logs(REPO / "data" / "routerbench" / "test.parquet")
    ids = list(pd.unique(df["prompt_id"]))[:N_PROMPTS]
    path = tmp_path_factory.mktemp("ab-sim") / "test.parquet"
    write_logs(df[df["prompt_id"].isin(ids)], path)
    return path


def test_simulate_replays_logged_outcomes(
    trained: Trained, test_logs: Path, write_experiment: WriteExperiment, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = str(trained.folder)
    path = write_experiment(
        "sim",
        arms=[
            {"name": "seed-task", "control": True, "weight": 1, "rules": {"kind": "task"}},
            {"name": "learned", "weight": 2, "router": folder},
            {"name": "cheap", "weight": 1, "always": "mistralai/mistral-7b-chat"},
        ],
        analysis={"min_requests_per_arm": 10, "n_boot": 300},
    )
    exp = load_experiment(path)
    result = simulate(exp, test_logs, {folder: trained.router}, seed=3)
    assert "ab simulate: routing" in capsys.readouterr().err  # defect 8: it was silent for minutes
    obs, report = result.observations, result.report
    wide, _ = to_wide(read_logs(test_logs)).complete()
    assert len(obs) == len(wide) == report["data"]["prompts"]
    # the same sticky hash as live traffic, on synthetic unit ids
    assert list(obs["served"]) == [arm_for_bucket(exp, bucket("sim", f"sim3-{i}")) for i in range(len(wide))]
    # outcomes are what the logs recorded for the chosen model
    for i, row in obs.iterrows():
        j = wide.models.index(row["model"])
        assert row["quality"] == wide.quality[i, j] and row["cost_usd"] == wide.cost[i, j]
    cheap = obs[obs["served"] == "cheap"]
    assert set(cheap["model"]) == {"mistralai/mistral-7b-chat"}
    task_rule = {"arc-challenge": "gpt-4-1106-preview", "mbpp": "gpt-4-1106-preview", "winogrande": "gpt-3.5-turbo-1106"}
    control = obs[obs["served"] == "seed-task"]
    assert all(task_rule[wide.tasks[i]] == m for i, m in zip(control.index, control["model"]))
    assert report["arms"]["learned"]["requests"] == int((obs["served"] == "learned").sum())
    assert report["arms"]["cheap"]["quality"] == pytest.approx(cheap["quality"].mean())
    # every arm on every prompt, paired
    cf = report["counterfactual"]
    assert cf["cheap"]["prompts"] == len(wide)
    j = wide.models.index("mistralai/mistral-7b-chat")
    assert cf["cheap"]["quality"] == pytest.approx(float(np.mean(wide.quality[:, j])))
    d = cf["cheap"]["cost_diff_usd"]
    assert d["diff"] == pytest.approx(cf["cheap"]["mean_cost_usd"] - cf["seed-task"]["mean_cost_usd"])
    assert d["lo"] <= d["diff"] <= d["hi"] < 0  # always mistral-7b is cheaper than the task rule on every prompt
    files = write_report(report, obs, tmp_path / "out")
    assert "## Counterfactual: every arm on every prompt" in (tmp_path / "out" / "report.md").read_text()
    assert len(files) == 5


def test_simulate_rejects_a_model_the_logs_lack(
    trained: Trained, test_logs: Path, write_experiment: WriteExperiment
) -> None:
    path = write_experiment(arms=[{"name": "a", "control": True, "always": "gpt-4-1106-preview"},
                                  {"name": "b", "always": "no-such-model"}])
    with pytest.raises(ValueError, match="'always: no-such-model' is not one of the models"):
        simulate(load_experiment(path), test_logs, {})


def test_rules_that_map_to_none_of_the_models_are_rejected(
    test_logs: Path, write_experiment: WriteExperiment, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "model_map: {big: [no-such-model]}\nbudget_rule: [{below: null, simple: big, complex: big}]\n"
        "task_rule: {default: big}\nlatency_rule: [{below_ms: null, model: big}]\n"
    )
    path = write_experiment(arms=[{"name": "a", "control": True, "always": "gpt-4-1106-preview"},
                                  {"name": "b", "rules": {"kind": "task", "file": str(rules)}}])
    with pytest.raises(ValueError, match=r"rules.yaml: rule model 'big' maps to none of the evaluated models"):
        simulate(load_experiment(path), test_logs, {})


def test_cli_simulate_loads_the_arms_and_prints_json(
    trained: Trained, test_logs: Path, write_experiment: WriteExperiment, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from llmroute.cli import app

    path = write_experiment("cli", arms=[
        {"name": "seed-budget", "control": True, "rules": {"kind": "budget", "budget_usd": 0.005}},
        {"name": "learned", "router": str(trained.folder)},
    ])
    res = CliRunner().invoke(app, ["ab", "simulate", str(path), "--logs", str(test_logs), "--limit", "20",
                                   "--format", "json", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["data"]["kind"] == "simulation" and report["data"]["prompts"] == 20
    assert sum(m["requests"] for m in report["arms"].values()) == 20
    assert report["arms"]["learned"]["router_versions"] == [trained.router.version]
    assert report["enough_data"] is False  # 20 requests is below the default 100 per arm
    bad = CliRunner().invoke(app, ["ab", "simulate", str(path), "--logs", str(tmp_path / "missing.parquet")])
    assert bad.exit_code == 2 and "missing.parquet" in bad.output
