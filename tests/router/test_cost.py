"""LinearCostModel: least-squares fit per model, clamps, catalog fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmroute.router.cost import LinearCostModel

T = np.array([100.0, 200.0, 300.0, 400.0])


def test_fit_recovers_linear_costs_and_predicts() -> None:
    costs = np.column_stack([1e-6 * T + 1e-4, 3e-5 * T + 2e-3])
    cm = LinearCostModel.fit(("a", "b"), T, costs, {})
    assert cm.per_token == pytest.approx((1e-6, 3e-5))
    assert cm.fixed == pytest.approx((1e-4, 2e-3))
    pred = cm.predict(np.array([0, 1000]))
    assert pred.shape == (2, 2)
    np.testing.assert_allclose(pred, [[1e-4, 2e-3], [1.1e-3, 3.2e-2]])
    np.testing.assert_allclose(cm.predict(T), costs)


def test_unknown_cells_are_skipped() -> None:
    t = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    costs = (1e-6 * t + 1e-4)[:, None].copy()
    costs[1, 0] = np.nan  # cost not logged
    t[2] = np.nan  # tokens unknown
    cm = LinearCostModel.fit(("a",), t, costs, {})
    assert cm.per_token[0] == pytest.approx(1e-6) and cm.fixed[0] == pytest.approx(1e-4)


def test_model_without_costs_falls_back_to_catalog_prices() -> None:
    costs = np.column_stack([1e-6 * T, np.full(4, np.nan)])
    cm = LinearCostModel.fit(("logged", "priced"), T, costs, {"priced": (1.0, 2.0)}, fallback_output_tokens=100)
    assert cm.per_token[1] == pytest.approx(1.0 / 1e6)
    assert cm.fixed[1] == pytest.approx(2.0 / 1e6 * 100)
    default = LinearCostModel.fit(("logged", "priced"), T, costs, {"priced": (1.0, 2.0)})
    assert default.fixed[1] == pytest.approx(2.0 / 1e6 * 256)


@pytest.mark.parametrize("prices", [{}, {"m": (None, None)}, {"m": (1.0, None)}, {"m": (None, 1.0)}])
def test_no_costs_and_no_prices_raises(prices: dict) -> None:
    with pytest.raises(ValueError, match="model 'm': no logged costs and no catalog prices"):
        LinearCostModel.fit(("m",), T, np.full((4, 1), np.nan), prices)


def test_fit_is_clamped_non_negative() -> None:
    decreasing = 1e-3 - 1e-6 * T  # negative slope -> constant at the mean
    negative_intercept = 2e-6 * T - 1e-4  # negative intercept -> through the origin
    cm = LinearCostModel.fit(("d", "n"), T, np.column_stack([decreasing, negative_intercept]), {})
    assert cm.per_token[0] == 0.0 and cm.fixed[0] == pytest.approx(decreasing.mean())
    assert cm.fixed[1] == 0.0 and cm.per_token[1] == pytest.approx(negative_intercept.sum() / T.sum())
    assert np.all(cm.predict(np.array([0.0, 10.0, 1e5])) >= 0)


def test_few_points_or_constant_tokens_give_the_mean() -> None:
    two_points = np.array([[1e-3], [3e-3], [np.nan], [np.nan]])
    cm = LinearCostModel.fit(("m",), T, two_points, {})
    assert cm.per_token[0] == 0.0 and cm.fixed[0] == pytest.approx(2e-3)
    cm = LinearCostModel.fit(("m",), np.full(4, 50.0), np.array([[1.0], [2.0], [3.0], [4.0]]), {})
    assert cm.per_token[0] == 0.0 and cm.fixed[0] == pytest.approx(2.5)


def test_round_trip_through_json() -> None:
    cm = LinearCostModel.fit(("a", "b"), T, np.column_stack([1e-6 * T + 1e-4, 2e-6 * T]), {})
    again = LinearCostModel.from_dict(json.loads(json.dumps(cm.to_dict())))
    assert again == cm
