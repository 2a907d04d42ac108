"""The off-policy promotion rule on constructed reports."""

from __future__ import annotations

import dataclasses

import pytest

from llmroute.offpolicy.estimators import Interval, PolicyEstimate
from llmroute.offpolicy.evaluate import OffPolicyReport, PolicyResult
from llmroute.offpolicy.gate import offpolicy_verdict


def _estimate(matches: int) -> PolicyEstimate:
    iv = Interval(0.7, 0.65, 0.75)
    return PolicyEstimate(iv, iv, iv, iv, matches, float(matches), 500)


def report(dq: Interval, dc: Interval, matches: int = 200) -> OffPolicyReport:
    res = PolicyResult("challenger", "llmroute/2", _estimate(matches), _estimate(matches), 0, 300, 0, matches)
    champ = dataclasses.replace(res, label="champion", router_version="llmroute/1")
    iv = Interval(0.7, 0.68, 0.72)
    return OffPolicyReport(600, 500, {}, 100, 0, iv, iv, 400, iv, iv, champ, res, dq, dc, 200 if matches else 0,
                           matches, 1000)


@pytest.mark.parametrize(
    ("dq", "dc", "matches", "passes", "why"),
    [
        (Interval(0.05, 0.01, 0.09), Interval(0.0001, 0.0, 0.0002), 200, True, ""),  # better quality
        (Interval(-0.005, -0.015, 0.005), Interval(-0.0002, -0.0003, -0.0001), 200, True, ""),  # cheaper, same quality
        (Interval(0.01, -0.05, 0.07), Interval(-0.0002, -0.0003, -0.0001), 200, False, "quality may be worse"),
        (Interval(-0.001, -0.01, 0.008), Interval(0.0001, 0.0, 0.0002), 200, False, "no gain"),
        (Interval(0.05, 0.01, 0.09), Interval(0.0, 0.0, 0.0), 12, False, "not enough evidence"),
        (Interval(0.05, None, None), Interval(0.0, None, None), 200, False, "has no interval"),
        (Interval(0.0, 0.0, 0.0), Interval(0.0, 0.0, 0.0), 0, False, "same model as the champion on every"),
    ],
)
def test_gate_rule(dq: Interval, dc: Interval, matches: int, passes: bool, why: str) -> None:
    v = offpolicy_verdict(report(dq, dc, matches), tolerance=0.02, min_matches=30)
    assert v.passes is passes
    assert why in v.describe()


def test_tolerance_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        offpolicy_verdict(report(Interval(0, 0, 0), Interval(0, 0, 0)), tolerance=-0.1)
