"""Experiment YAML: the examples load; mistakes are reported with file, field and expectation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmroute.abtest.experiment import ExperimentError, load_experiment
from tests.abtest.conftest import WriteExperiment

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["learned-vs-seed-budget", "learned-vs-always-gpt4"])
def test_bundled_examples_load(name: str) -> None:
    exp = load_experiment(REPO / "experiments" / f"{name}.yaml")
    assert exp.name == name
    assert exp.control.name in {a.name for a in exp.arms}
    assert {a.kind for a in exp.arms} >= {"router"}


def test_full_spec(write_experiment: WriteExperiment, tmp_path: Path) -> None:
    path = write_experiment(
        unit="session", start="2026-11-01T00:00:00", stop="2026-12-01T00:00:00+00:00", success_threshold=0.8,
        arms=[{"name": "rules", "control": True, "rules": {"kind": "budget", "budget_usd": 0.01, "file": "r.yaml"}},
              {"name": "learned", "weight": 3, "router": "routers/small"}],
        guardrails={"max_cost_per_request_usd": 0.01, "max_error_rate": 0.1, "min_requests": 20},
    )
    exp = load_experiment(path)
    assert exp.unit == "session" and exp.success_threshold == 0.8
    assert exp.start == datetime(2026, 11, 1, tzinfo=UTC)  # no zone -> UTC
    assert exp.arm("learned").router == str(tmp_path / "routers" / "small")  # relative to the YAML file
    rules = exp.arm("rules").rules
    assert rules is not None and rules.file == tmp_path / "r.yaml" and rules.budget_usd == 0.01
    assert exp.guardrails.min_requests == 20 and exp.arm("learned").weight == 3
    assert exp.active(datetime(2026, 11, 15, tzinfo=UTC)) and not exp.active(datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"unit": "device"}, "unit: Input should be 'user', 'tenant' or 'session'"),
        ({"arms": [{"name": "a", "always": "m"}, {"name": "b", "always": "m"}]},
         "exactly one arm must have 'control: true', got none"),
        ({"arms": [{"name": "a", "control": True, "always": "m"}, {"name": "b", "weight": 0, "always": "m"}]},
         "arms[1] (b).weight: Input should be greater than 0 (got 0)"),
        ({"arms": [{"name": "a", "control": True, "always": "m"}, {"name": "b", "router": "x", "always": "m"}]},
         "expected exactly one of 'router', 'rules' or 'always', got ['router', 'always']"),
        ({"arms": [{"name": "a", "control": True, "always": "m"}, {"name": "a", "always": "n"}]},
         "arm names must be unique"),
        ({"arms": [{"name": "a b", "control": True, "always": "m"}, {"name": "c", "always": "n"}]},
         "arms[0] (a b).name"),
        ({"arms": [{"name": "a", "control": True, "rules": {"kind": "cost"}}, {"name": "c", "always": "n"}]},
         "arms[0] (a).rules.kind: Input should be 'budget', 'task' or 'latency'"),
        ({"start": "2026-12-01", "stop": "2026-11-01"}, "'stop' (2026-11-01T00:00:00+00:00) must be after 'start'"),
        ({"start": "next week"}, "start: Input should be a valid datetime"),
        ({"guardrails": {"max_error_rate": 1.5}}, "guardrails.max_error_rate: Input should be less than or equal to 1"),
        ({"arms": [{"name": "a", "control": True, "always": "m"}]}, "arms: List should have at least 2 items"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_errors_name_file_field_and_expectation(write_experiment: WriteExperiment, fields: dict, expected: str) -> None:
    path = write_experiment(**fields)
    with pytest.raises(ExperimentError) as err:
        load_experiment(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="cannot read the experiment file"):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_experiment(bad)
    bad.write_text("- just a list")
    with pytest.raises(ExperimentError, match="expected a mapping"):
        load_experiment(bad)
