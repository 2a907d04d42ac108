"""Baselines: per-task static, kNN, cheapest-adequate classifier and the seed guide's rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from llmroute.router.baselines import CheapestAdequate, SeedRules, knn, per_task_static, success
from tests.router.helpers import ROUTERBENCH_MODELS


def test_success_thresholds_and_keeps_unknowns() -> None:
    out = success(np.array([0.0, 0.49, 0.5, 0.8, np.nan]), 0.5)
    np.testing.assert_array_equal(out[:4], [0.0, 0.0, 1.0, 1.0])
    assert np.isnan(out[4])


def test_per_task_static_hand_made() -> None:
    quality = np.array(
        [
            [1.0, 0.0],  # task a
            [1.0, 0.0],  # task a
            [0.8, np.nan],  # task a, model 1 unknown
            [0.0, 1.0],  # task b
            [0.2, 1.0],  # task b
        ]
    )
    tasks = ["a", "a", "a", "b", "b"]
    got = per_task_static(quality, tasks, ["b", "a", "unseen", None], threshold=0.5)
    # overall success: model 0 = 3/5, model 1 = 2/4; each task's rate is shrunk by one pseudo-observation
    overall = np.array([0.6, 0.5])
    a = np.array([(3 + 0.6) / 4, (0 + 0.5) / 3])
    b = np.array([(0 + 0.6) / 3, (2 + 0.5) / 3])
    np.testing.assert_allclose(got, np.stack([b, a, overall, overall]))
    assert got[0, 1] > got[0, 0] and got[1, 0] > got[1, 1]  # per task, the model that did well ranks first


def test_per_task_static_handles_unknown_task_in_training() -> None:
    quality = np.array([[1.0], [0.0], [1.0]])
    got = per_task_static(quality, [None, "a", None], [None, "a"], threshold=0.5)
    np.testing.assert_allclose(got[:, 0], [(2 + 2 / 3) / 3, (0 + 2 / 3) / 2])


def _unit(angles: list[float]) -> np.ndarray:
    return np.column_stack([np.cos(angles), np.sin(angles)]).astype(np.float32)


def test_knn_on_two_clusters() -> None:
    emb = _unit([0.0, 0.1, -0.1, np.pi / 2, np.pi / 2 + 0.1, np.pi / 2 - 0.1])
    quality = np.array([[1, 0], [1, 0], [0.9, 0.2], [0, 1], [0, 1], [0.1, 0.7]], dtype=float)
    query = _unit([0.05, np.pi / 2 + 0.05])
    got = knn(emb, quality, query, threshold=0.5, k=3)
    # the 3 neighbours all come from the query's own cluster
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 1.0]])
    # k beyond the reference set: every query sees the overall success rate
    np.testing.assert_allclose(knn(emb, quality, query, 0.5, k=50), np.full((2, 2), 0.5))


def test_knn_fills_unknown_outcomes_with_the_model_mean() -> None:
    emb = _unit([0.0, 0.1, -0.1])
    quality = np.array([[1.0, np.nan], [1.0, 0.0], [0.0, 1.0]])
    # model 1's known mean is 0.5; the 2 nearest to angle 0.02 are the rows at 0.0 and 0.1
    got = knn(emb, quality, _unit([0.02]), threshold=0.5, k=2)
    np.testing.assert_allclose(got, [[1.0, 0.25]])


def test_cheapest_adequate_probabilities_are_cumulative_along_cost() -> None:
    rng = np.random.default_rng(0)
    n, m = 120, 4
    X = rng.standard_normal((n, 5))
    # the cheap model succeeds on half the prompts (feature 0 > 0), the others more often
    quality = np.column_stack(
        [(X[:, 0] > 0).astype(float), rng.random(n) < 0.5, rng.random(n) < 0.7, np.ones(n)]
    ).astype(float)
    mean_cost = np.array([3.0, 1.0, 2.0, 4.0])  # cost order: 1, 2, 0, 3
    ca = CheapestAdequate(rounds=20).fit(X, quality, mean_cost, threshold=0.5)
    probs = ca.predict(X[:30])
    assert probs.shape == (30, m)
    ordered = probs[:, np.argsort(mean_cost)]
    assert np.all(np.diff(ordered, axis=1) >= -1e-12)
    np.testing.assert_allclose(ordered[:, -1], 1.0)
    assert np.all((probs >= 0) & (probs <= 1 + 1e-9))


def test_cheapest_adequate_single_class() -> None:
    X = np.random.default_rng(1).standard_normal((30, 3))
    quality = np.ones((30, 3))
    ca = CheapestAdequate(rounds=5).fit(X, quality, np.array([2.0, 1.0, 3.0]), threshold=0.5)
    assert ca.booster_ is None
    np.testing.assert_allclose(ca.predict(X[:4]), np.ones((4, 3)))  # the cheapest model is always adequate


# ---- seed rules ------------------------------------------------------------------------------

M = list(ROUTERBENCH_MODELS)


def idx(name: str) -> int:
    return M.index(name)


def test_bundled_seed_rules_resolve_routerbench_models() -> None:
    rules = SeedRules.load()
    assert rules.source.endswith("seed_rules.yaml")
    for seed_name in rules.config["model_map"]:
        assert M[rules.resolve(seed_name, M)] in M
    assert M[rules.resolve("gpt-4", M)] == "gpt-4-1106-preview"
    assert M[rules.resolve("llama-2-7b", M)] == "mistralai/mistral-7b-chat"
    assert M[rules.resolve("gpt-3.5-turbo-1106", M)] == "gpt-3.5-turbo-1106"  # not mapped: used as is
    assert rules.complexity("winogrande") == "simple"
    assert rules.complexity("mbpp") == "complex" and rules.complexity(None) == "complex"


def test_budget_choices_pick_the_expected_tiers() -> None:
    choices, budgets = SeedRules.load().budget_choices(["winogrande", "mbpp", "arc-challenge", None], M)
    assert budgets == [0.005, 0.05, 0.5]
    names = [[M[j] for j in row] for row in choices]
    assert names[0] == ["gpt-3.5-turbo-1106", "gpt-4-1106-preview", "gpt-4-1106-preview"]  # simple
    assert names[1] == ["mistralai/mistral-7b-chat", "claude-v2", "gpt-4-1106-preview"]  # complex
    assert names[2] == names[1] and names[3] == names[1]


def test_task_and_latency_choices() -> None:
    rules = SeedRules.load()
    task = rules.task_choices(["mbpp", "winogrande", "something-else", None], M)
    assert [M[j] for j in task[:, 0]] == [
        "gpt-4-1106-preview", "gpt-3.5-turbo-1106", "gpt-4-1106-preview", "gpt-4-1106-preview",
    ]
    lat, budgets = rules.latency_choices(3, M)
    assert budgets == [50, 300, 1000, 5000] and lat.shape == (3, 4)
    assert [M[j] for j in lat[0]] == [
        "mistralai/mistral-7b-chat", "gpt-3.5-turbo-1106", "gpt-4-1106-preview", "gpt-4-1106-preview",
    ]


def _bundled_config() -> dict:
    return dict(SeedRules.load().config)


@pytest.mark.parametrize("section", ["model_map", "budget_rule", "task_rule", "latency_rule"])
def test_rules_file_missing_a_section_raises(tmp_path: Path, section: str) -> None:
    cfg = _bundled_config()
    del cfg[section]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=f"missing section '{section}'") as exc:
        SeedRules.load(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("content", ["", "model_map: [unclosed\n"])
def test_empty_or_broken_rules_file_raises(tmp_path: Path, content: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match="rules.yaml"):
        SeedRules.load(path)
    with pytest.raises(ValueError, match="cannot read the rules file"):
        SeedRules.load(tmp_path / "missing.yaml")


def test_rule_model_mapping_to_no_evaluated_model_raises() -> None:
    with pytest.raises(ValueError, match="rule model 'gpt-4' maps to none of the evaluated models.*edit model_map"):
        SeedRules.load().resolve("gpt-4", ["some-other-model"])
