"""`ab report` on a generated decision log with a known effect: the numbers, the verdict, the files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmroute.abtest.experiment import load_experiment
from llmroute.abtest.report import analyse, observations_from_log
from llmroute.cli import app
from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionRecord,
    FeedbackRecord,
    LoggedCandidate,
    OutcomeRecord,
)
from tests.abtest.conftest import WriteExperiment

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _log(url: str, n: int, seed: int = 0, effect: float = 0.15) -> dict[str, list[float]]:
    """``n`` requests per arm of experiment 'exp' (arms 'control' and 'cheap'), plus noise rows.

    'cheap' costs a tenth and its quality is ``effect`` higher; every request has an outcome and
    feedback, a tenth of 'cheap' calls fail and every fifth escalates. Returns the qualities per arm."""
    rng = np.random.default_rng(seed)
    records: list = []
    qualities: dict[str, list[float]] = {"control": [], "cheap": []}
    for i in range(2 * n):
        arm = "control" if i % 2 == 0 else "cheap"
        model = "gpt-4-1106-preview" if arm == "control" else "mistralai/mistral-7b-chat"
        cost = 0.01 if arm == "control" else 0.001
        did = f"d{i}"
        cands = (LoggedCandidate("gpt-4-1106-preview", 0.9, 0.01, True), LoggedCandidate("mistralai/mistral-7b-chat", 0.5, 0.001, True))
        records.append(DecisionRecord(
            decision_id=did, created_at=T0 + timedelta(seconds=i), prompt_sha256="0" * 64, router_version=f"always:{model}",
            chosen_model=model, candidates=cands, arm=f"exp:{arm}", user=f"u{i}", source="chat",
        ))
        ok = not (arm == "cheap" and i % 20 == 1)
        attempts = ({"model": model}, {"model": "x"}) if arm == "cheap" and i % 10 == 3 else ({"model": model},)
        records.append(OutcomeRecord(did, model, ok, cost_usd=cost, latency_ms=100.0 if arm == "cheap" else 300.0,
                                     attempts=attempts))
        q = float(np.clip(rng.normal(0.6 + (effect if arm == "cheap" else 0.0), 0.2), 0, 1))
        qualities[arm].append(q)
        records.append(FeedbackRecord(did, q, created_at=T0 + timedelta(hours=1, seconds=i)))
    # rows that are not this experiment's: no arm, and another experiment
    for j, arm in enumerate((None, "other:control")):
        records.append(DecisionRecord(decision_id=f"x{j}", created_at=T0, prompt_sha256="0" * 64, router_version="r",
                                      chosen_model="m", arm=arm))
    with DecisionLogStore(url) as store:
        store.write_many(records)
    return qualities


@pytest.fixture
def experiment(write_experiment: WriteExperiment) -> Path:
    return write_experiment(analysis={"min_requests_per_arm": 50, "quality_effect": 0.1, "n_boot": 500},
                            guardrails={"max_error_rate": 0.08, "min_requests": 30})


def test_report_numbers_and_significance(tmp_path: Path, experiment: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    qualities = _log(url, 200)
    exp = load_experiment(experiment)
    obs = observations_from_log(url, exp)
    assert len(obs) == 400 and set(obs["served"]) == {"control", "cheap"}
    r = analyse(exp, obs, {"kind": "live"})
    cheap, control = r["arms"]["cheap"], r["arms"]["control"]
    assert cheap["requests"] == control["requests"] == 200 and cheap["feedback"] == 200
    assert cheap["quality"] == pytest.approx(np.mean(qualities["cheap"]))
    assert cheap["mean_cost_usd"] == pytest.approx(0.001) and control["mean_cost_usd"] == pytest.approx(0.01)
    assert cheap["error_rate"] == pytest.approx(0.10) and control["error_rate"] == 0.0
    assert cheap["escalation_rate"] == pytest.approx(0.20) and control["escalation_rate"] == 0.0
    assert cheap["latency_ms_mean"] == pytest.approx(100.0)
    successes = sum(q >= 0.5 for q in qualities["cheap"])
    assert cheap["target_attainment"] == pytest.approx(successes / 200)
    assert cheap["cost_per_success_usd"] == pytest.approx(200 * 0.001 / successes)
    c = r["comparisons"]["cheap"]
    assert c["quality"]["welch"]["significant"] and c["quality"]["bootstrap"]["significant"]
    assert c["quality"]["welch"]["lo"] < 0.15 < c["quality"]["welch"]["hi"]
    assert c["cost"]["measure"] == "realised cost" and c["cost"]["welch"]["diff"] == pytest.approx(-0.009)
    assert c["error_rate"]["diff"] == pytest.approx(0.10) and c["error_rate"]["significant"]
    assert r["enough_data"] is True
    assert any("Significant at 0.05: quality, cost" in v for v in r["verdict"])
    # the 10% error rate breaks the 8% guardrail, recomputed from the log in time order
    stop = r["guardrails"]["stops_recomputed"]["cheap"]
    assert "error rate" in stop["reason"] and stop["after_requests"] >= 30


def test_not_enough_data_is_said_plainly(tmp_path: Path, experiment: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    _log(url, 20, effect=0.0)
    r = analyse(load_experiment(experiment), observations_from_log(url, load_experiment(experiment)), {"kind": "live"})
    assert r["enough_data"] is False
    assert r["verdict"][0].startswith("Not enough data yet: control has 20, cheap has 20 requests")
    assert "Not enough data yet for quality" in r["verdict"][1]
    more = r["comparisons"]["cheap"]["power"]["feedback_more_needed"]
    assert more == r["comparisons"]["cheap"]["power"]["feedback_needed_per_arm"] - 20 > 0


def test_cli_report_writes_every_format(tmp_path: Path, experiment: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    _log(url, 60)
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["ab", "report", str(experiment), "--db", url, "--out", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["arms"]["cheap"]["requests"] == 60
    assert json.loads((out / "report.json").read_text())["arms"] == printed["arms"]
    md = (out / "report.md").read_text()
    assert "| cheap | always mistralai/mistral-7b-chat | 60 |" in md and "## Power" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<h2>Verdict</h2>" in page
    assert (out / "arms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(app, ["ab", "report", str(experiment), "--db", f"sqlite:///{tmp_path / 'none.sqlite'}"])
    assert missing.exit_code == 2 and "no decision log" in missing.output


def test_cli_assign_and_help(experiment: Path) -> None:
    res = CliRunner().invoke(app, ["ab", "assign", str(experiment), "alice", "bob"])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(app, ["ab", "assign", str(experiment), "bob", "alice"])
    lines = dict(line.split("\t") for line in res.stdout.strip().splitlines())
    assert lines == dict(line.split("\t") for line in again.stdout.strip().splitlines())
    assert set(lines.values()) <= {"control", "cheap"}
    helped = CliRunner().invoke(app, ["ab", "--help"])
    assert "report" in helped.output and "simulate" in helped.output and "experiment" in helped.output.lower()
