"""Quality targets and confidence bars on the trained router."""

from __future__ import annotations

import numpy as np
import pytest

from llmroute.router import policy
from llmroute.router.decision import Constraints, Decision, QualityTarget
from llmroute.router.router import Router
from tests.router.helpers import sample_prompts

TARGETS = (0.5, 0.7, 0.9, 1.0)


@pytest.fixture(scope="module")
def prompts(memo_embedder: object) -> list[str]:
    ps = sample_prompts(50, seed=3)
    from llmroute.router.text import focus_text

    memo_embedder.encode([focus_text(p) for p in ps])  # type: ignore[attr-defined]  # one batch, then cached
    return ps


def cost_of_choice(d: Decision) -> float:
    return next(c.expected_cost_usd for c in d.candidates if c.model == d.model)


@pytest.mark.parametrize("rule", policy.rule_names())
def test_raising_the_target_never_lowers_the_expected_cost(router: Router, prompts: list[str], rule: str) -> None:
    changed = 0
    for prompt in prompts:
        costs = [cost_of_choice(router.route(prompt, target=QualityTarget(t), rule=rule)) for t in TARGETS]
        assert costs == sorted(costs), (prompt[:80], costs)
        changed += costs[0] != costs[-1]
    # the knob really moves: for some prompts the highest target buys a pricier model
    assert changed > 0


def test_absolute_targets_are_monotone_too(router: Router, prompts: list[str]) -> None:
    for prompt in prompts[:20]:
        costs = [
            cost_of_choice(router.route(prompt, target=QualityTarget(t, "absolute"))) for t in (0.3, 0.6, 0.8, 0.95)
        ]
        assert costs == sorted(costs)


def test_confidence_zero_picks_the_cheapest_eligible_model(router: Router, prompts: list[str]) -> None:
    for prompt in prompts[:20]:
        d = router.route(prompt, confidence=0.0)
        cheapest = min(d.candidates, key=lambda c: c.expected_cost_usd)
        assert d.model == cheapest.model and d.cleared and d.rule == "threshold" and d.knob == 0.0
        assert d.reason.startswith("cheapest eligible model with P(meets target) >= 0.00")
    # with the cheapest model excluded, the next cheapest; the reason says a cheaper model was excluded
    d = router.route(prompts[0], Constraints(excluded_models=(cheapest.model,)), confidence=0.0)
    nxt = min((c for c in d.candidates if c.eligible), key=lambda c: c.expected_cost_usd)
    assert d.model == nxt.model != cheapest.model
    assert "(a cheaper model was excluded by the constraints)" in d.reason


def test_confidence_above_every_probability_falls_back_to_best_quality(router: Router, prompts: list[str]) -> None:
    seen = 0
    for prompt in prompts:
        d = router.route(prompt, confidence=1.0)
        probs = np.array([c.probability for c in d.candidates])
        if probs.max() >= 1.0:
            continue
        seen += 1
        assert not d.cleared
        assert d.model == d.candidates[int(np.argmax(probs))].model
        assert "no eligible model reaches P(meets target) >= 1.00" in d.reason
        assert "best expected quality" in d.reason
        # excluding the most likely model falls back to the best remaining one
        d2 = router.route(prompt, Constraints(excluded_models=(d.model,)), confidence=1.0)
        rest = [c for c in d2.candidates if c.eligible]
        assert not d2.cleared and d2.model == max(rest, key=lambda c: c.probability).model
    assert seen >= 10


def test_unreachable_target_is_reported(router: Router) -> None:
    target = QualityTarget(1.5)  # 150% of the best single model
    table = router.knob_tables[router.default_rule]
    assert table.knob_for(target)[1] is False
    d = router.route("What is the capital of France?", target=target)
    assert "was not reached on validation data, so the best knob is used" in d.reason
    assert str(d.target) == "150% of the best model"
    reachable = router.route("What is the capital of France?", target=QualityTarget(0.5))
    assert "not reached" not in reachable.reason


def test_reason_does_not_claim_a_cheaper_model_was_excluded_when_none_was(router: Router, prompts: list[str]) -> None:
    d = router.route(prompts[0], confidence=0.0)
    priciest = max(d.candidates, key=lambda c: c.expected_cost_usd).model
    d2 = router.route(prompts[0], Constraints(excluded_models=(priciest,)), confidence=0.0)
    assert d2.model == d.model  # still the cheapest model: nothing cheaper was excluded
    assert "a cheaper model was excluded" not in d2.reason
