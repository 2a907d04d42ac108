"""LinearCostModel: least-squares fit per model, clamps, catalog fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmroute.router.cost import LinearCostModel, PriceFloor

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
    prices = {"logged": (1.0, 0.0), "priced": (1.0, 2.0)}
    cm = LinearCostModel.fit(("logged", "priced"), T, costs, prices, fallback_output_tokens=100)
    assert cm.per_token[1] == 0.0 and cm.fixed[1] == 0.0  # no line: the floor alone
    np.testing.assert_allclose(cm.predict(T)[:, 1], (1.0 * T + 2.0 * 100) / 1e6)
    default = LinearCostModel.fit(("logged", "priced"), T, costs, prices)
    np.testing.assert_allclose(default.predict(T)[:, 1], (1.0 * T + 2.0 * 256) / 1e6)
    # no answer lengths logged: a cap assumes a long answer
    np.testing.assert_allclose(default.predict_cap(T)[:, 1], (1.0 * T + 2.0 * 1024) / 1e6)


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


def test_cost_is_never_below_catalog_price_arithmetic() -> None:
    """A line fitted on short prompts (flat: answers dominate the cost) must not undercut the input price
    of a long prompt: the defect that let a 30,001-token prompt pass max_cost_usd 0.02 at $10/M."""
    t = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    out = np.array([[900.0], [100.0], [500.0], [300.0], [700.0]])
    costs = 1.0e-3 - 1e-6 * t[:, None]  # noisy logs: negative slope, clamped to a flat line
    cm = LinearCostModel.fit(("gpt",), t, costs, {"gpt": (10.0, 30.0)}, output_tokens=out)
    assert cm.per_token[0] == 0.0
    long = np.array([30_001.0])
    floor = 30_001 * 10.0 / 1e6 + out.mean() * 30.0 / 1e6
    assert cm.predict(long)[0, 0] == pytest.approx(floor)
    assert cm.predict(long)[0, 0] >= 0.30
    cap = cm.predict_cap(long)[0, 0]
    assert cap == pytest.approx(30_001 * 10.0 / 1e6 + np.quantile(out, 0.95) * 30.0 / 1e6)
    assert cap > cm.predict(long)[0, 0]
    # a request bounding the answer bounds the cap's answer too
    assert cm.predict_cap(long, max_output_tokens=10)[0, 0] == pytest.approx((30_001 * 10.0 + 10 * 30.0) / 1e6)
    # a line above the floor (e.g. a minimum charge) stands
    high = np.full((5, 1), 1.0)
    assert LinearCostModel.fit(("gpt",), t, high, {"gpt": (10.0, 30.0)}).predict(np.array([10.0]))[0, 0] == 1.0


def test_unknown_price_assumes_the_highest_known_and_says_so() -> None:
    costs = np.column_stack([np.full(4, 1e-4), np.full(4, 1e-4)])
    cm = LinearCostModel.fit(("known", "unknown"), T, costs, {"known": (10.0, 30.0), "unknown": (None, None)})
    assert cm.floors[1] is not None and cm.floors[1].price_assumed
    np.testing.assert_allclose(cm.predict(T)[:, 1], cm.predict(T)[:, 0])
    assert cm.unknown_price("known") is None
    assert cm.unknown_price("unknown") == "price unknown: assumed the highest known ($10/M input, $30/M output)"
    alone = LinearCostModel.fit(("unknown",), T, costs[:, :1], {})
    assert alone.floors == (None,)
    assert alone.unknown_price("unknown") == "price unknown: expected cost from logged costs only"


def test_floors_round_trip_and_old_artifacts_load() -> None:
    cm = LinearCostModel.fit(("a",), T, (1e-6 * T)[:, None], {"a": (1.0, 2.0)}, output_tokens=np.full((4, 1), 50.0))
    assert LinearCostModel.from_dict(json.loads(json.dumps(cm.to_dict()))) == cm
    old = LinearCostModel.from_dict({"models": ["a"], "per_token": [1e-6], "fixed": [0.0]})
    assert old.floors == () and old.unknown_price("a") is None
    np.testing.assert_allclose(old.predict(T)[:, 0], 1e-6 * T)


def test_without_price_floor_the_line_alone_estimates_realised_cost() -> None:
    t = np.array([100.0, 200.0, 300.0, 400.0])
    costs = np.column_stack([1e-7 * t, np.full(4, np.nan)])
    cm = LinearCostModel.fit(("a", "b"), t, costs, {"a": (10.0, 30.0), "b": (1.0, 2.0)}, price_floor=False)
    np.testing.assert_allclose(cm.predict(t)[:, 0], 1e-7 * t)  # below the price arithmetic, as logged
    np.testing.assert_allclose(cm.predict(t)[:, 1], (1.0 * t + 2.0 * 256) / 1e6)  # never logged: prices


def _per_model_floors(model: LinearCostModel, tokens: np.ndarray, cap: bool, max_output_tokens: int = 0) -> np.ndarray:
    """The floors applied one model at a time through PriceFloor.cost (how _with_floor did it before it was
    vectorised): the reference the vectorised floors must match bit for bit."""
    out = model._line(tokens)
    t = np.asarray(tokens, dtype=np.float64).reshape(-1)
    for j, f in enumerate(model.floors):
        if f is not None:
            answer = f.cap_output_tokens if cap else f.expected_output_tokens
            if cap and max_output_tokens:
                answer = min(answer, float(max_output_tokens))
            out[:, j] = np.maximum(out[:, j], f.cost(t, answer))
    return out


def test_vectorised_floors_are_the_per_model_floors_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    m = 9
    floors = tuple(
        None if j in (2, 6) else PriceFloor(float(rng.uniform(0, 3e-5)), float(rng.uniform(0, 6e-5)),
                                            float(rng.uniform(1, 900)), float(rng.uniform(100, 3000)))
        for j in range(m)
    )
    model = LinearCostModel(tuple(f"m{j}" for j in range(m)), tuple(rng.uniform(0, 4e-5, m)),
                            tuple(rng.uniform(-1e-4, 1e-3, m)), floors)
    tokens = np.concatenate([[0.0, 1.0, 7.0, 123_456.0], rng.integers(0, 20_000, 200).astype(np.float64)])
    for got, want in [
        (model.predict(tokens), _per_model_floors(model, tokens, cap=False)),
        (model.predict_cap(tokens), _per_model_floors(model, tokens, cap=True)),
        (model.predict_cap(tokens, 300), _per_model_floors(model, tokens, cap=True, max_output_tokens=300)),
        (model.predict_cap(tokens[:1], 5), _per_model_floors(model, tokens[:1], cap=True, max_output_tokens=5)),
    ]:
        assert got.tobytes() == want.tobytes()
    # the floors raised some costs (the check is not vacuous) and a model without a floor keeps its line
    assert (model.predict(tokens) > model._line(tokens)).any()
    assert np.array_equal(model.predict(tokens)[:, 2], model._line(tokens)[:, 2])
    bare = LinearCostModel(("a", "b"), (1e-6, 2e-6), (0.0, 1e-4))  # a router saved before floors existed
    assert bare.predict(tokens).tobytes() == bare._line(tokens).tobytes()
    no_floor = LinearCostModel(("a",), (1e-6,), (0.0,), (None,))
    assert no_floor.predict_cap(tokens, 10).tobytes() == no_floor._line(tokens).tobytes()
