"""Quality targets -> knobs: parsing, monotone mapping, unreachable targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmroute.router import policy
from llmroute.router.decision import QualityTarget
from llmroute.router.knobs import KnobTable, build_knob_table, realised


def table(quality: tuple[float, ...], best: float = 0.8) -> KnobTable:
    n = len(quality)
    return KnobTable(
        rule="threshold",
        knobs=tuple(float(k) for k in np.linspace(0, 1, n)),
        quality=quality,
        cost=tuple(float(c) for c in np.linspace(1, 5, n)),
        best_single_model="big",
        best_single_quality=best,
        best_single_cost=4.0,
    )


# ---- QualityTarget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [("95%", 0.95, "relative"), (" 100% ", 1.0, "relative"), ("120%", 1.2, "relative"), ("0%", 0.0, "relative"),
     ("0.85", 0.85, "absolute"), ("1", 1.0, "absolute"), ("0", 0.0, "absolute")],
)
def test_quality_target_parse(text: str, value: float, kind: str) -> None:
    t = QualityTarget.parse(text)
    assert t.kind == kind and t.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "%", "abc", "95 percent", "1.2", "-0.1", "-5%", "200%", "nan", "nan%"])
def test_quality_target_parse_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError):
        QualityTarget.parse(text)


def test_quality_target_validation_and_str() -> None:
    with pytest.raises(ValueError, match="kind must be 'relative' or 'absolute'"):
        QualityTarget(0.5, "percent")
    with pytest.raises(ValueError, match="out of range for an absolute target"):
        QualityTarget(1.01, "absolute")
    assert str(QualityTarget(0.95)) == "95% of the best model"
    assert str(QualityTarget(0.85, "absolute")) == "quality 0.850"


# ---- KnobTable -------------------------------------------------------------------------------


def test_knob_for_cheapest_knob_meeting_the_target() -> None:
    # quality dips at index 2; the running maximum makes the curve monotone
    t = table((0.5, 0.6, 0.55, 0.7, 0.8))
    assert t.knob_for(QualityTarget(0.5, "absolute")) == (0.0, True)
    assert t.knob_for(QualityTarget(0.58, "absolute")) == (0.25, True)
    assert t.knob_for(QualityTarget(0.6, "absolute")) == (0.25, True)
    assert t.knob_for(QualityTarget(0.65, "absolute")) == (0.75, True)
    assert t.knob_for(QualityTarget(0.8, "absolute")) == (1.0, True)
    # relative targets are shares of the best single model's quality (0.8): 0.75 * 0.8 = 0.6
    assert t.absolute(QualityTarget(0.75)) == pytest.approx(0.6)
    assert t.knob_for(QualityTarget(0.75)) == (0.25, True)


def test_unreachable_target_gives_best_knob_and_reachable_false() -> None:
    t = table((0.5, 0.6, 0.9, 0.7, 0.9))
    knob, ok = t.knob_for(QualityTarget(0.95, "absolute"))
    assert not ok
    assert knob == 0.5  # the cheapest knob with the best validation quality
    knob, ok = t.knob_for(QualityTarget(1.5))  # 150% of 0.8 = 1.2: never reachable
    assert (knob, ok) == (0.5, False)


@pytest.mark.parametrize("rule", policy.rule_names())
@pytest.mark.parametrize("seed", range(3))
def test_higher_target_never_maps_to_a_cheaper_knob(rule: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 200, 5
    quality = (rng.random((n, m)) < np.linspace(0.3, 0.9, m)).astype(float)
    cost = np.tile(np.geomspace(1e-5, 1e-2, m), (n, 1)) * rng.uniform(0.5, 1.5, (n, m))
    probs = np.clip(quality * 0.6 + rng.random((n, m)) * 0.4, 0, 1)
    models = tuple(f"m{j}" for j in range(m))
    t = build_knob_table(rule, models, probs, cost, quality, cost)
    assert t.rule == rule and t.knobs == tuple(float(k) for k in policy.knob_grid(rule))
    assert t.best_single_model == models[int(np.argmax(quality.mean(axis=0)))]
    positions, reachable = [], []
    for target in np.linspace(0.0, 1.5, 61):
        knob, ok = t.knob_for(QualityTarget(float(target)))
        positions.append(t.knobs.index(knob))
        reachable.append(ok)
        # unreachable exactly when the target lies above the best validation quality
        assert ok == (float(target) * t.best_single_quality <= max(t.quality) + 1e-12)
    assert positions == sorted(positions), "a higher target mapped to a cheaper knob"
    assert reachable == sorted(reachable, reverse=True)  # once unreachable, stays unreachable
    assert reachable[0] and not reachable[-1]


def test_knob_table_round_trips_through_json() -> None:
    t = table((0.5, 0.6, 0.55, 0.7, 0.8))
    again = KnobTable.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again == t


def test_realised_skips_unknown_cells() -> None:
    quality = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]])
    cost = np.array([[1.0, 2.0], [np.nan, 4.0], [3.0, 6.0]])
    choices = np.array([[0, 1], [0, 1], [0, 1]])
    q, c = realised(quality, cost, choices)
    np.testing.assert_allclose(q, [0.5, 2 / 3])
    np.testing.assert_allclose(c, [2.0, 4.0])
