"""Pieces of the offline cascade evaluation that need no trained router."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from llmroute.experiments.cascade_eval import auc, perfect_scorer_points
from llmroute.router import policy


def test_rank_auc_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.random(300) < 0.3
        p = np.round(rng.random(300), 1)  # many ties
        assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_perfect_scorer_points_cover_the_knob_grid_ends() -> None:
    grid = policy.knob_grid("utility")
    pts = perfect_scorer_points("utility", 3)
    assert pts[0].knob == grid[0] and pts[-1].knob == grid[-1]
    assert all(p.router_weight == 0.0 and p.scorer_weight == 1.0 for p in pts)
