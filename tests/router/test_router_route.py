"""Router.route on a router trained on 250 RouterBench prompts: decisions and every constraint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest

from llmroute.data.catalog import ModelSpec
from llmroute.data.tokens import count_tokens
from llmroute.router import policy
from llmroute.router.decision import Constraints, Decision, NoEligibleModelError, QualityTarget
from llmroute.router.router import Router
from tests.router.helpers import ROUTERBENCH_MODELS, make_spec

PROMPT = "Write a python function that returns the n-th Fibonacci number, using memoisation."


def by_model(d: Decision) -> dict:
    return {c.model: c for c in d.candidates}


def eligible(d: Decision) -> set[str]:
    return {c.model for c in d.candidates if c.eligible}


def test_decision_carries_model_candidates_reason_and_version(router: Router) -> None:
    d = router.route(PROMPT)
    assert router.models == ROUTERBENCH_MODELS
    assert [c.model for c in d.candidates] == list(router.models)
    assert d.model in router.models
    assert all(c.eligible and c.excluded_by is None for c in d.candidates)
    probs = np.array([c.probability for c in d.candidates])
    costs = np.array([c.expected_cost_usd for c in d.candidates])
    assert np.all((probs >= 0) & (probs <= 1)) and np.all(costs > 0)
    assert d.reason and d.rule == router.default_rule and d.rule in policy.rule_names()
    assert d.router_version == router.version and d.router_version != "unversioned"
    assert d.target == router.default_target and d.task_hint is None
    # the numbers are the router's batch predictions, and the choice is the rule applied to them
    p, c = router.predict(router.prepare([PROMPT]))
    np.testing.assert_allclose(probs, p[0])
    np.testing.assert_allclose(costs, c[0])
    knob, _ = router.knob_tables[d.rule].knob_for(router.default_target)
    assert d.knob == knob
    idx, _ = policy.choose(d.rule, p, c, np.ones_like(p, dtype=bool), knob)
    assert d.model == router.models[int(idx[0])]
    # the decision is plain data
    again = json.loads(json.dumps(d.to_dict()))
    assert again["model"] == d.model and len(again["candidates"]) == len(router.models)


def test_task_hint_is_recorded(router: Router) -> None:
    d = router.route(PROMPT, task="mbpp")
    assert d.task_hint == "mbpp"
    assert [c.model for c in d.candidates] == list(router.models)


def test_context_window(router: Router) -> None:
    first = router.route(PROMPT)
    tokens = count_tokens(PROMPT)
    spec = router.specs[first.model] or make_spec(first.model)
    router = router.with_catalog({first.model: replace(spec, context_window=tokens - 1)})
    d = router.route(PROMPT)
    assert d.model != first.model
    cand = by_model(d)[first.model]
    assert not cand.eligible
    assert cand.excluded_by == f"context window {tokens - 1} tokens < {tokens} prompt tokens"
    assert f"excluded by constraints: {first.model} (context window" in d.reason
    # max_output_tokens counts against the window as well
    router = router.with_catalog({first.model: replace(spec, context_window=tokens + 10)})
    assert by_model(router.route(PROMPT))[first.model].eligible
    d = router.route(PROMPT, Constraints(max_output_tokens=11))
    assert by_model(d)[first.model].excluded_by.endswith("+ 11 output tokens")  # type: ignore[union-attr]


def test_long_prompt_excludes_small_context_windows_of_the_catalog(router: Router) -> None:
    prompt = "lorem ipsum dolor " * 7000  # ~21k tokens
    tokens = count_tokens(prompt)
    d = router.route(prompt)
    smallest = min(s.context_window for s in router.specs.values() if s and s.context_window)
    for m, c in by_model(d).items():
        window = router.specs[m].context_window if router.specs[m] else None  # type: ignore[union-attr]
        assert c.eligible == ((window or smallest) >= tokens), (m, window, tokens)
    assert not by_model(d)["gpt-3.5-turbo-1106"].eligible  # 16,385-token window
    assert d.model in eligible(d)


def test_max_cost(router: Router) -> None:
    caps = sorted(c.cost_cap_usd for c in router.route(PROMPT).candidates)  # type: ignore[type-var]
    limit = caps[3]
    d = router.route(PROMPT, Constraints(max_cost_usd=limit))
    assert eligible(d) == {c.model for c in d.candidates if c.cost_cap_usd <= limit}  # type: ignore[operator]
    assert len(eligible(d)) == 4
    assert by_model(d)[d.model].cost_cap_usd <= limit
    for c in d.candidates:
        assert c.cost_cap_usd >= c.expected_cost_usd  # type: ignore[operator]
        if not c.eligible:
            assert c.excluded_by.startswith("cost up to $")  # type: ignore[union-attr]
    costs = caps
    with pytest.raises(NoEligibleModelError, match="max_cost_usd"):
        router.route(PROMPT, Constraints(max_cost_usd=costs[0] / 2))


def test_max_latency_unknown_latency_excludes(router: Router) -> None:
    # the bundled catalog knows no model's typical latency
    with pytest.raises(NoEligibleModelError) as exc:
        router.route(PROMPT, Constraints(max_latency_ms=10_000))
    assert set(exc.value.reasons) == set(router.models)
    assert set(exc.value.reasons.values()) == {
        "typical latency unknown, cannot promise max_latency_ms (give typical_latency_ms in a --catalog file, "
        "or train on logs with latency_ms)"
    }


def test_max_latency_known_latency_over_limit_excludes(router: Router) -> None:
    specs: dict[str, ModelSpec | None] = {
        m: replace(router.specs[m] or make_spec(m), typical_latency_ms=100.0 * i) for i, m in enumerate(router.models)
    }
    specs[router.models[0]] = None  # not in the catalog: latency unknown
    router = dataclasses.replace(router, specs=specs)
    d = router.route(PROMPT, Constraints(max_latency_ms=450))
    assert eligible(d) == set(router.models[1:5])
    assert d.model in eligible(d)
    c = by_model(d)
    # unknown latency: the highest known one (1,000 ms) is assumed
    assert c[router.models[0]].excluded_by == "typical latency unknown, assumed 1000 ms > max_latency_ms 450"
    assert "typical_latency_ms unknown: assumed 1000 ms (the highest known)" in c[router.models[0]].assumed
    assert c[router.models[5]].excluded_by == "typical latency 500 ms > max_latency_ms 450"


def test_allowed_models(router: Router) -> None:
    allowed = ("mistralai/mistral-7b-chat", "claude-v2")
    d = router.route(PROMPT, Constraints(allowed_models=allowed))
    assert d.model in allowed and eligible(d) == set(allowed)
    assert {c.excluded_by for c in d.candidates if not c.eligible} == {"not in allowed_models"}
    # an alias in the catalog entry counts as the model's name
    spec = router.specs["claude-v2"] or make_spec("claude-v2")
    router = router.with_catalog({"claude-v2": replace(spec, aliases=("my-favourite",))})
    assert router.route(PROMPT, Constraints(allowed_models=("my-favourite",))).model == "claude-v2"


def test_excluded_models(router: Router) -> None:
    first = router.route(PROMPT)
    d = router.route(PROMPT, Constraints(excluded_models=(first.model,)))
    assert d.model != first.model
    assert by_model(d)[first.model].excluded_by == "in excluded_models"
    assert eligible(d) == set(router.models) - {first.model}


def test_required_capabilities(router: Router) -> None:
    d = router.route(PROMPT, Constraints(required_capabilities=("code",)))
    want = {m for m in router.models if router.specs[m] and "code" in router.specs[m].capabilities}  # type: ignore[union-attr]
    assert 0 < len(want) < len(router.models)
    assert eligible(d) == want and d.model in want
    for c in d.candidates:
        if not c.eligible:
            assert c.excluded_by.startswith("lacks required capabilities ['code']")  # type: ignore[union-attr]


def test_all_excluded_raises_naming_every_model_and_reason(router: Router) -> None:
    with pytest.raises(NoEligibleModelError) as exc:
        router.route(PROMPT, Constraints(required_capabilities=("vision",)))
    msg = str(exc.value)
    assert set(exc.value.reasons) == set(router.models)
    for m in router.models:
        assert f"{m}: lacks required capabilities ['vision']" in msg
    with pytest.raises(NoEligibleModelError) as exc:
        router.route(PROMPT, Constraints(allowed_models=()))
    for m in router.models:
        assert f"{m}: not in allowed_models" in str(exc.value)


def test_bad_arguments(router: Router) -> None:
    with pytest.raises(ValueError, match="confidence must be within"):
        router.route(PROMPT, confidence=1.5)
    with pytest.raises(ValueError, match="unknown rule 'greedy'"):
        router.route(PROMPT, rule="greedy")
    for rule in policy.rule_names():
        d = router.route(PROMPT, target=QualityTarget(0.9), rule=rule)
        assert d.rule == rule and str(d.target) == "90% of the best model"


@pytest.mark.parametrize("prompt", ["", "   \n\n  "])
def test_empty_prompt_still_gets_a_decision(router: Router, prompt: str) -> None:
    d = router.route(prompt)
    assert d.model in router.models
    assert all(np.isfinite(c.probability) and 0 <= c.probability <= 1 for c in d.candidates)


def test_cost_cap_holds_for_a_long_prompt_at_catalog_prices(router: Router) -> None:
    """Defect 1: a 30,001-token prompt under max_cost_usd 0.02 went to gpt-4-1106-preview ($10/M input,
    so >= $0.30) with an expected cost of $0.005."""
    prompt = "lorem ipsum dolor " * 10_000
    tokens = count_tokens(prompt)
    assert tokens > 30_000
    d = router.route(prompt, Constraints(max_cost_usd=0.02))
    for c in d.candidates:
        spec = router.specs[c.model]
        assert spec is not None and spec.input_price_per_1m is not None
        arithmetic = tokens * spec.input_price_per_1m / 1e6
        assert c.expected_cost_usd >= arithmetic and c.cost_cap_usd >= arithmetic, c  # type: ignore[operator]
        if c.eligible:
            assert c.cost_cap_usd <= 0.02  # type: ignore[operator]
    gpt4 = by_model(d)["gpt-4-1106-preview"]
    assert not gpt4.eligible and gpt4.expected_cost_usd >= 0.30
    assert gpt4.excluded_by.startswith("cost up to $")  # type: ignore[union-attr]


def test_unknown_context_window_is_not_assumed_to_fit(router: Router) -> None:
    """Defect 2: a 150,001-token prompt went to claude-v1 (window unknown) while unknown latency excluded."""
    assert router.specs["claude-v1"] is not None and router.specs["claude-v1"].context_window is None
    with pytest.raises(NoEligibleModelError) as exc:  # beyond every window, claude-v1's unknown one too
        router.route("lorem ipsum dolor " * 50_001)
    assert exc.value.reasons["claude-v1"].startswith("context window unknown, assumed 4096 tokens < ")
    prompt = "lorem ipsum dolor " * 1_700
    assert 4096 < count_tokens(prompt) < 16_000
    d = router.route(prompt)
    claude = by_model(d)["claude-v1"]
    assert not claude.eligible
    assert claude.excluded_by.startswith("context window unknown, assumed 4096 tokens < ")  # type: ignore[union-attr]
    assert "context_window unknown: assumed 4096 tokens (the smallest known)" in claude.assumed
    assert d.model != "claude-v1"
    known = by_model(d)["claude-v2"]
    assert not any(a.startswith("context_window") for a in known.assumed)


def test_unreachable_target_is_not_cleared(router: Router) -> None:
    """Defect 9: --target 150% answered cleared: true although no knob reached it on validation data."""
    d = router.route(PROMPT, target=QualityTarget.parse("150%"))
    assert not d.cleared
    assert "was not reached on validation data" in d.reason


def test_unknown_model_names_and_task_hints_are_errors(router: Router) -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt-5' in allowed_models; this router's models are "):
        router.route(PROMPT, Constraints(allowed_models=("gpt-5", "claude-v2")))
    with pytest.raises(ValueError, match="unknown model 'nope' in excluded_models"):
        router.route(PROMPT, Constraints(excluded_models=("nope",)))
    with pytest.raises(ValueError, match="unknown task hint 'poetry'; this router was trained on the tasks "):
        router.route(PROMPT, task="poetry")


def test_target_messages_suggest_the_percent_form() -> None:
    with pytest.raises(ValueError, match=r"quality target 95 is out of range for an absolute target .*did you mean '95%'"):
        QualityTarget.parse("95")
    with pytest.raises(ValueError, match="quality target 151% is out of range"):
        QualityTarget.parse("151%")


def test_a_user_catalog_makes_latency_limits_usable(router: Router, tmp_path) -> None:
    """Defect 3: --max-latency-ms always failed with the bundled catalog; a user catalog now gives latencies."""
    user = tmp_path / "mine.yaml"
    user.write_text("models:\n  - name: claude-v2\n    typical_latency_ms: 800\n"
                    "  - name: gpt-4-1106-preview\n    typical_latency_ms: 3000\n")
    mine = router.with_catalog_file(user)
    assert router.specs["claude-v2"].typical_latency_ms is None  # type: ignore[union-attr]  # the original is untouched
    d = mine.route(PROMPT, Constraints(max_latency_ms=1000))
    assert d.model == "claude-v2" and eligible(d) == {"claude-v2"}
    c = by_model(d)
    assert c["gpt-4-1106-preview"].excluded_by == "typical latency 3000 ms > max_latency_ms 1000"
    assert c["claude-v1"].excluded_by == "typical latency unknown, assumed 3000 ms > max_latency_ms 1000"
