"""Baseline routers, fitted on the same training logs and embeddings as the learned router.

Scored baselines return an (n, m) matrix of predicted P(meets target), so the same decision rules and
knob sweeps apply to them as to the learned router; rule-based baselines return chosen model indices
directly, one column per setting of their knob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmroute.router.neighbours import NeighbourIndex


def success(quality: np.ndarray, threshold: float) -> np.ndarray:
    """1.0 where quality meets the threshold, 0.0 where not, NaN where unknown."""
    return np.where(np.isnan(quality), np.nan, (quality >= threshold - 1e-9).astype(float))


def per_task_static(
    train_quality: np.ndarray, train_tasks: Sequence[str | None], test_tasks: Sequence[str | None], threshold: float
) -> np.ndarray:
    """Each model's success rate on the training prompts of the test prompt's task (told the task)."""
    s = success(train_quality, threshold)
    overall: np.ndarray = np.nanmean(s, axis=0)
    table: dict[str | None, np.ndarray] = {}
    tasks = np.asarray(train_tasks, dtype=object)
    for t in set(train_tasks):
        rows = s[tasks == t]
        known = (~np.isnan(rows)).sum(axis=0)
        # one pseudo-observation at the overall rate keeps tiny tasks from extreme estimates
        table[t] = (np.nansum(rows, axis=0) + overall) / (known + 1.0)
    return np.stack([table.get(t, overall) for t in test_tasks])


def knn(
    train_emb: np.ndarray, train_quality: np.ndarray, test_emb: np.ndarray, threshold: float, k: int = 50
) -> np.ndarray:
    """Mean success of the ``k`` most similar training prompts, per model."""
    return NeighbourIndex(train_emb, success(train_quality, threshold)).mean_quality(test_emb, k)


@dataclass
class CheapestAdequate:
    """The literal "cheapest adequate model" classifier: multiclass LightGBM over the training label
    "cheapest model that met the target" (the best model where none did).

    Its scores for model j are P(the cheapest adequate model costs no more than j), so the threshold
    rule reads "the cheapest model that is adequate with probability >= tau".
    """

    rounds: int = 80
    seed: int = 0

    def fit(self, X: np.ndarray, quality: np.ndarray, mean_cost: np.ndarray, threshold: float) -> CheapestAdequate:
        import lightgbm as lgb  # here: importing it imports scikit-learn and pandas (see router.native_booster)

        s = success(quality, threshold)
        self.order_ = np.argsort(mean_cost)
        best = int(np.nanargmax(np.nanmean(s, axis=0)))
        labels = np.full(len(s), best)
        for i, row in enumerate(s):
            ok = [j for j in self.order_ if row[j] == 1.0]
            if ok:
                labels[i] = ok[0]
        self.classes_ = np.unique(labels)
        y = np.searchsorted(self.classes_, labels)
        params = {
            "objective": "multiclass",
            "num_class": len(self.classes_),
            "learning_rate": 0.1,
            "num_leaves": 7,
            "min_child_samples": 20,
            "feature_fraction": 0.5,
            "max_bin": 63,
            "seed": self.seed,
            "verbose": -1,
        }
        if len(self.classes_) == 1:
            self.booster_ = None
        else:
            self.booster_ = lgb.train(params, lgb.Dataset(X, y), num_boost_round=self.rounds)
        self.m_ = quality.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(X), self.m_))
        if self.booster_ is None:
            probs[:, self.classes_[0]] = 1.0
        else:
            probs[:, self.classes_] = self.booster_.predict(X)
        cum = np.cumsum(probs[:, self.order_], axis=1)
        out = np.empty_like(cum)
        out[:, self.order_] = cum
        return out


@dataclass(frozen=True)
class SeedRules:
    """The seed guide's static rules (budget, task and latency based), read from a YAML file."""

    config: dict[str, Any]
    source: str

    @classmethod
    def load(cls, path: Path | None = None) -> SeedRules:
        from importlib import resources

        p = path or Path(str(resources.files("llmroute").joinpath("rules", "seed_rules.yaml")))
        try:
            cfg = yaml.safe_load(Path(p).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{p}: cannot read the rules file: {exc}") from exc
        for key in ("model_map", "budget_rule", "task_rule", "latency_rule"):
            if key not in (cfg or {}):
                raise ValueError(f"{p}: missing section '{key}'")
        return cls(cfg, str(p))

    def resolve(self, seed_name: str, models: Sequence[str]) -> int:
        for cand in self.config["model_map"].get(seed_name, [seed_name]):
            if cand in models:
                return list(models).index(cand)
        raise ValueError(
            f"{self.source}: rule model '{seed_name}' maps to none of the evaluated models "
            f"(model_map lists {self.config['model_map'].get(seed_name)}); edit model_map"
        )

    def complexity(self, task: str | None) -> str:
        tc = self.config.get("task_complexity", {})
        return tc.get(task, tc.get("default", "complex")) if task else tc.get("default", "complex")

    def budget_choices(self, tasks: Sequence[str | None], models: Sequence[str]) -> tuple[np.ndarray, list[float]]:
        """``select_model_by_budget`` at each budget in ``budgets_to_evaluate``: (n, K) indices."""
        budgets = [float(b) for b in self.config.get("budgets_to_evaluate", [0.005, 0.05, 0.5])]
        cols = []
        for b in budgets:
            tier = next(t for t in self.config["budget_rule"] if t["below"] is None or b < float(t["below"]))
            cols.append([self.resolve(tier[self.complexity(t)], models) for t in tasks])
        return np.asarray(cols).T, budgets

    def task_choices(self, tasks: Sequence[str | None], models: Sequence[str]) -> np.ndarray:
        rule = self.config["task_rule"]
        return np.asarray([[self.resolve(rule.get(t, rule["default"]), models)] for t in tasks])

    def latency_choices(self, n: int, models: Sequence[str]) -> tuple[np.ndarray, list[float]]:
        budgets = [float(b) for b in self.config.get("latency_budgets_to_evaluate", [50, 300, 1000, 5000])]
        cols = []
        for b in budgets:
            tier = next(t for t in self.config["latency_rule"] if t["below_ms"] is None or b < float(t["below_ms"]))
            cols.append([self.resolve(tier["model"], models)] * n)
        return np.asarray(cols).T, budgets
