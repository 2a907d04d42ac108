"""The chat answer's hand-built parts are what the slower generic code gave: the decision dict (against
``RouteResponse.from_decision(...).model_dump()``) and an attempt's dict (against ``dataclasses.asdict``),
the same keys in the same order, the same values and the same JSON bytes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from llmroute.router.decision import Candidate, Decision, QualityTarget
from llmroute.serving.cascade import Attempt
from llmroute.serving.schemas import RouteResponse, route_response_dict

CANDIDATES = (
    Candidate("cheap", 0.41, 1.5e-05, True, None, 3.25e-05, ()),
    Candidate("big", 0.93, 0.0021, False, "max_cost_usd: expected 0.0021 > 0.001", None, ("context_window: 8192",)),
    Candidate("mid", 1, 0, True),  # ints where floats are expected: pydantic makes them floats
    Candidate("np", np.float64(0.5), np.float64(2e-06), True, None, np.float64(4e-06), ("price", "latency")),
)


def _decisions() -> list[tuple[Decision, str | None, str | None]]:
    base = Decision("cheap", CANDIDATES, "cleared the bar", True, "threshold", 0.62, "v1",
                    QualityTarget(0.95), None, {}, np.zeros(4, dtype=np.float32))
    return [
        (base, None, None),
        (dataclasses.replace(base, target=None, task_hint="math", knob=1, extra={"explored": True}), "exp1", "b"),
        (dataclasses.replace(base, target=QualityTarget(0.7, "absolute"), cleared=False, knob=np.float64(0.125),
                             reason="fell back \u00e9\u4e2d", extra={"explored": False, "other": 3}), None, None),
        (dataclasses.replace(base, candidates=CANDIDATES[:1], rule="utility", router_version=""), "e", None),
    ]


@pytest.mark.parametrize("case", range(4))
def test_the_decision_dict_is_the_route_response_dump(case: int) -> None:
    d, experiment, arm = _decisions()[case]
    want = RouteResponse.from_decision("dec-1", d, experiment, arm).model_dump()
    got = route_response_dict("dec-1", d, experiment, arm)
    assert got == want
    assert json.dumps(got) == json.dumps(want)  # key order and number types (1.0, not 1) too
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    for g, w in zip(got["candidates"], want["candidates"], strict=True):
        assert [(k, type(v)) for k, v in g.items()] == [(k, type(v)) for k, v in w.items()]


def _attempts() -> list[Attempt]:
    return [
        Attempt("cheap", True, None, 12.5, 1.2e-05, 0.8, 0.41, 1),
        Attempt("big", False, "timed out", 30000.0, 0.0, None, 0.93, 3, error_kind="timeout",
                escalated_because="failure", scorer_probability=None, logprob_confidence=None),
        Attempt("mid", True, None, 3.0, 0.0, 0.66, 0.5, 1, escalated_because="low_confidence",
                scorer_probability=0.7, logprob_confidence=0.9, answer_key="42"),
    ]


@pytest.mark.parametrize("case", range(3))
def test_an_attempt_dict_is_asdict(case: int) -> None:
    a = _attempts()[case]
    got: dict[str, Any] = a.to_dict()
    assert got == dataclasses.asdict(a)
    assert list(got) == [f.name for f in dataclasses.fields(Attempt)]
    assert json.dumps(got) == json.dumps(dataclasses.asdict(a))
