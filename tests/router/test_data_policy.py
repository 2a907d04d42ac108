"""Data policy: local_only excludes every model not known to be local; prefer_local; availability."""

from __future__ import annotations

import dataclasses

import pytest

from llmroute.router.data_policy import api_fallback, check_policy, policy_exclusion, prefer_local, strictest
from llmroute.router.decision import Constraints, NoEligibleModelError
from llmroute.router.eligibility import exclusion_reasons, only_unavailable
from llmroute.router.router import Router
from tests.router.helpers import make_spec as spec

MODELS = ("local-a", "api-b", "unknown-c")
SPECS = [spec("local-a", local=True), spec("api-b"), None]
COSTS = [0.0, 0.01, 0.02]


def test_strictest_and_check() -> None:
    assert strictest(None, None) == "any"
    assert strictest("any", "prefer_local") == "prefer_local"
    assert strictest("local_only", "any") == "local_only"
    assert strictest("prefer_local", "local_only", None) == "local_only"
    with pytest.raises(ValueError, match="data_policy must be one of any, prefer_local, local_only; got 'local'"):
        check_policy("local")
    with pytest.raises(ValueError, match="got 'nowhere'"):
        Constraints(data_policy="nowhere")  # an unknown policy must not pass as "any"


def test_local_only_excludes_api_and_unknown_models_first() -> None:
    r = exclusion_reasons(Constraints(data_policy="local_only", excluded_models=("api-b",)), MODELS, SPECS, 10, COSTS)
    assert r[0] is None
    assert r[1] is not None and r[1].startswith("data_policy local_only: is not a local model (provider test)")
    assert r[2] == "data_policy local_only: has no catalog entry, so it is not known to be local"
    for policy in ("any", "prefer_local"):
        assert exclusion_reasons(Constraints(data_policy=policy), MODELS, SPECS, 10, COSTS) == [None, None, None]
    assert policy_exclusion("local_only", None) is not None and policy_exclusion("any", None) is None


def test_unavailable_is_named_last_and_is_temporary() -> None:
    c = Constraints(unavailable=(("local-a", "circuit breaker open (5 consecutive failures)"),), max_cost_usd=0.015)
    r = exclusion_reasons(c, MODELS, SPECS, 10, COSTS)
    assert r[0] == "unavailable: circuit breaker open (5 consecutive failures)"
    assert r[1] is None and r[2] is not None and r[2].startswith("expected cost")
    assert only_unavailable({m: x for m, x in zip(MODELS, r) if x is not None})
    assert not only_unavailable({"api-b": "data_policy local_only: is not a local model"})


def test_prefer_local_picks_the_cheapest_clearing_local_model() -> None:
    models = ("l1", "l2", "api")
    specs = [spec("l1", local=True), spec("l2", local=True), spec("api")]
    j, why = prefer_local(models, specs, [0.6, 0.8, 0.9], [0.02, 0.01, 0.05], [True, True, True], 2, 0.55)
    assert j == 1 and "local model l2 reaches P(meets target) 0.800 >= 0.550" in why
    j, why = prefer_local(models, specs, [0.6, 0.8, 0.9], [0.02, 0.01, 0.05], [True, False, True], 2, 0.7)
    assert j == 2 and "no eligible local model reaches P(meets target) >= 0.700 (best: l1 at 0.600)" in why
    j, why = prefer_local(models, specs, [0.6, 0.8, 0.9], [0.02, 0.01, 0.05], [False, False, True], 2, 0.1)
    assert j == 2 and "no local model is eligible" in why
    assert prefer_local(models, specs, [0.6, 0.8, 0.9], [0.0] * 3, [True] * 3, 0, 0.99)[0] == 0  # already local


@dataclasses.dataclass(frozen=True)
class _A:
    model: str
    ok: bool
    error_kind: str | None = None


def test_api_fallback_names_the_failed_local_models() -> None:
    specs = {"loc": spec("loc", local=True), "api": spec("api")}
    got = api_fallback([_A("loc", False, "timeout"), _A("api", True)], "api", specs)
    assert got == {"from": [{"model": "loc", "error_kind": "timeout"}], "to": "api"}
    assert api_fallback([_A("loc", True)], "loc", specs) is None
    assert api_fallback([_A("api", False, "http_500"), _A("loc", True)], "api", specs) is None  # no local failed
    assert api_fallback([_A("loc", False, "timeout")], None, specs) is None


# ---- on a trained router ---------------------------------------------------------------------------
LOCAL = "mistralai/mistral-7b-chat"
PROMPT = "Write a python function that returns the n-th Fibonacci number, using memoisation."


def _local(router: Router, *names: str) -> Router:
    specs = dict(router.specs)
    for n in names:
        s = specs[n]
        assert s is not None
        specs[n] = dataclasses.replace(s, local=True)
    return dataclasses.replace(router, specs=specs)


def test_router_local_only_routes_only_to_local_models(router: Router) -> None:
    router = _local(router, LOCAL)
    d = router.route(PROMPT, Constraints(data_policy="local_only"))
    assert d.model == LOCAL
    assert {c.model for c in d.candidates if c.eligible} == {LOCAL}
    assert "data_policy local_only" in d.reason
    with pytest.raises(NoEligibleModelError) as err:
        router.route(PROMPT, Constraints(data_policy="local_only", excluded_models=(LOCAL,)))
    assert all("data_policy local_only" in r for m, r in err.value.reasons.items() if m != LOCAL)


def test_router_local_only_without_any_local_model_is_refused(router: Router) -> None:
    with pytest.raises(NoEligibleModelError, match="data_policy local_only"):
        router.route(PROMPT, Constraints(data_policy="local_only"))


def test_router_prefer_local(router: Router) -> None:
    free = router.route(PROMPT, Constraints(), confidence=0.0)
    plain = router.route(PROMPT, Constraints(), confidence=0.5)
    local = next(c for c in plain.candidates if c.model != plain.model)
    router = _local(router, local.model)
    # a bar the local model clears: it is served, and the reason says why
    d = router.route(PROMPT, Constraints(data_policy="prefer_local"), confidence=local.probability)
    assert d.model == local.model and d.cleared and "prefer_local: local model" in d.reason
    # a bar it does not clear: the API model the rule picks is served, and the reason names the local model
    bar = min(0.999, local.probability + 1e-3)
    base = router.route(PROMPT, Constraints(), confidence=bar)
    d = router.route(PROMPT, Constraints(data_policy="prefer_local"), confidence=bar)
    if base.model != local.model:
        assert d.model == base.model and "prefer_local: no eligible local model reaches" in d.reason
    assert free.model  # routing without a policy is unchanged by marking a model local
    assert router.route(PROMPT, Constraints(), confidence=0.5).model == plain.model


def test_router_unavailable_moves_to_the_next_model(router: Router) -> None:
    first = router.route(PROMPT, Constraints())
    d = router.route(PROMPT, Constraints(unavailable=((first.model, "circuit breaker open (test)"),)))
    assert d.model != first.model
    cand = next(c for c in d.candidates if c.model == first.model)
    assert not cand.eligible and cand.excluded_by == "unavailable: circuit breaker open (test)"
    assert f"{first.model} (unavailable: circuit breaker open (test))" in d.reason


def test_with_catalog_replaces_specs_by_name_and_alias(router: Router) -> None:
    from llmroute.data.catalog import Catalog

    old = router.specs[LOCAL]
    assert old is not None and not old.local
    cat = Catalog([dataclasses.replace(old, name="my-mistral", aliases=(LOCAL,), local=True, rate_limit_rpm=60)])
    served = router.with_catalog(cat)
    assert served.specs[LOCAL] is not None and served.specs[LOCAL].local and served.specs[LOCAL].rate_limit_rpm == 60
    assert router.specs[LOCAL] is old  # the original router is unchanged
    assert served.specs["gpt-4-1106-preview"] is router.specs["gpt-4-1106-preview"]
