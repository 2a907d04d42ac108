"""exclusion_reasons: which constraint excludes which model, in the documented order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmroute.data.catalog import ModelSpec
from llmroute.router.decision import Constraints, NoEligibleModelError
from llmroute.router.eligibility import LATENCY_HINT, assumed_figures, exclusion_reasons, resolve_figures
from tests.router.helpers import make_spec as spec

MODELS = ("small", "mid", "big")
SPECS = [
    spec("small", context_window=100, typical_latency_ms=200.0, capabilities=("chat",), aliases=("tiny",)),
    spec("mid", context_window=8000, typical_latency_ms=900.0, capabilities=("chat", "code")),
    spec("big", context_window=None, typical_latency_ms=None, capabilities=("chat", "code", "reasoning")),
]
COSTS = [0.001, 0.01, 0.1]


def reasons(c: Constraints, tokens: int = 50, specs: list[ModelSpec | None] | None = None) -> list[str | None]:
    return exclusion_reasons(c, MODELS, SPECS if specs is None else specs, tokens, COSTS)


def test_no_constraints_exclude_nothing() -> None:
    assert reasons(Constraints()) == [None, None, None]


def test_context_window() -> None:
    r = reasons(Constraints(), tokens=500)
    assert r[0] == "context window 100 tokens < 500 prompt tokens"
    assert r[1] is None
    # unknown context window: the smallest known one (100) is assumed, and the reason says so
    assert r[2] == "context window unknown, assumed 100 tokens < 500 prompt tokens"
    r = reasons(Constraints(max_output_tokens=60), tokens=50)
    assert r[0] == "context window 100 tokens < 50 prompt tokens + 60 output tokens"
    assert reasons(Constraints(max_output_tokens=50), tokens=50)[0] is None  # exactly fits


def test_max_cost() -> None:
    r = reasons(Constraints(max_cost_usd=0.01))
    assert r[:2] == [None, None]
    assert r[2] == "expected cost $0.100000 > max_cost_usd $0.010000"


def test_max_latency_known_and_unknown() -> None:
    r = reasons(Constraints(max_latency_ms=500))
    assert r[0] is None
    assert r[1] == "typical latency 900 ms > max_latency_ms 500"
    # unknown latency: the highest known one (900 ms) is assumed
    assert r[2] == "typical latency unknown, assumed 900 ms > max_latency_ms 500"
    # a model missing from the catalog has unknown latency too
    r = reasons(Constraints(max_latency_ms=5000), specs=[SPECS[0], SPECS[1], None])
    assert r == [None, None, None]
    # with no latency known at all, none can be promised
    none_known = [replace(s, typical_latency_ms=None) for s in SPECS]
    r = reasons(Constraints(max_latency_ms=5000), specs=none_known)
    assert r == ["typical latency unknown, cannot promise max_latency_ms (" + LATENCY_HINT + ")"] * 3


def test_allowed_and_excluded_models_match_names_and_aliases() -> None:
    r = reasons(Constraints(allowed_models=("tiny", "big")))
    assert r == [None, "not in allowed_models", None]
    r = reasons(Constraints(excluded_models=("tiny", "mid")))
    assert r == ["in excluded_models", "in excluded_models", None]
    assert reasons(Constraints(allowed_models=())) == ["not in allowed_models"] * 3


def test_required_capabilities() -> None:
    r = reasons(Constraints(required_capabilities=("code",)))
    assert r[0] == "lacks required capabilities ['code'] (has: chat)"
    assert r[1] is None and r[2] is None
    r = reasons(Constraints(required_capabilities=("code", "reasoning")), specs=[SPECS[0], SPECS[1], None])
    assert r[1] == "lacks required capabilities ['code', 'reasoning'] (has: chat, code)"
    assert r[2] == "lacks required capabilities ['code', 'reasoning'] (has: unknown)"


def test_first_failing_constraint_is_named() -> None:
    c = Constraints(
        allowed_models=("mid", "big"), excluded_models=("big",), required_capabilities=("code",),
        max_latency_ms=100, max_cost_usd=0.0,
    )
    r = reasons(c, tokens=10_000)
    assert r[0] == "not in allowed_models"
    assert r[1].startswith("context window 8000")  # type: ignore[union-attr]
    assert r[2] == "in excluded_models"


def test_no_eligible_model_error_names_every_model() -> None:
    r = reasons(Constraints(max_cost_usd=0.0001, max_latency_ms=100))
    err = NoEligibleModelError({m: x or "" for m, x in zip(MODELS, r)})
    msg = str(err)
    assert msg.startswith("no model satisfies the request's constraints")
    for m, x in zip(MODELS, r):
        assert x and f"{m}: {x}" in msg
    assert isinstance(err, ValueError) and err.reasons == dict(zip(MODELS, r))


@pytest.mark.parametrize("tokens", [0, 99, 100])
def test_context_window_boundary(tokens: int) -> None:
    assert reasons(Constraints(), tokens=tokens)[0] is None


def test_unknown_figures_are_reported_as_assumed() -> None:
    figs = resolve_figures(SPECS)
    assert [assumed_figures(f) for f in figs[:2]] == [(), ()]
    assert assumed_figures(figs[2]) == (
        "context_window unknown: assumed 100 tokens (the smallest known)",
        "typical_latency_ms unknown: assumed 900 ms (the highest known)",
    )
    nothing = resolve_figures([SPECS[2], None])
    assert assumed_figures(nothing[1]) == (
        "context_window unknown and no model's is known",
        "typical_latency_ms unknown and no model's is known",
    )
    # with no window known anywhere, prompts are not refused for it (nothing could be routed)
    assert exclusion_reasons(Constraints(), ("big",), [SPECS[2]], 10**6, [0.0]) == [None]


def test_cost_limit_checks_the_cap_not_the_mean() -> None:
    r = exclusion_reasons(Constraints(max_cost_usd=0.05), MODELS, SPECS, 50, COSTS, cap_cost=[0.001, 0.06, 0.1])
    assert r[0] is None
    assert r[1] == "cost up to $0.060000 > max_cost_usd $0.050000"
