"""Guardrails stop an arm that breaks its cost or error limit; its traffic then goes to the control."""

from __future__ import annotations

import pytest

from llmroute.abtest.assignment import arm_for_bucket, assign, bucket
from llmroute.abtest.experiment import Arm, Experiment, Guardrails
from llmroute.abtest.guardrails import GuardrailMonitor, replay


def _exp(**limits: object) -> Experiment:
    arms = (Arm("control", 1, control=True, always="a"), Arm("pricey", 1, always="b"))
    return Experiment(name="g", unit="user", arms=arms, guardrails=Guardrails(**limits))  # type: ignore[arg-type]


def test_cost_limit_stops_after_min_requests() -> None:
    m = GuardrailMonitor(_exp(max_cost_per_request_usd=0.01, min_requests=10))
    for _ in range(9):
        m.observe_request("pricey", 0.05)
    assert m.stopped == frozenset()  # over the limit, but below min_requests
    m.observe_request("pricey", 0.05)
    assert m.stopped == {"pricey"}
    stop = m.stops["pricey"]
    assert stop.after_requests == 10 and "mean cost per request $0.050000 > max $0.01" in stop.reason


def test_cheap_arm_and_control_are_not_stopped() -> None:
    m = GuardrailMonitor(_exp(max_cost_per_request_usd=0.01, min_requests=5))
    for _ in range(50):
        m.observe_request("pricey", 0.009)
        m.observe_request("control", 1.0)  # the control is the fallback: never stopped
    assert m.stopped == frozenset()


def test_error_rate_from_outcomes_and_realised_cost() -> None:
    m = GuardrailMonitor(_exp(max_error_rate=0.2, max_cost_per_request_usd=0.01, min_requests=10))
    for i in range(10):
        m.observe_request("pricey", 0.02)  # expected cost at decision time
        m.correct_cost("pricey", 0.02, 0.001, ok=i % 10 != 0)  # realised: cheap, 10% errors
    assert m.stopped == frozenset()
    assert m.tallies["pricey"].mean_cost == pytest.approx(0.001) and m.tallies["pricey"].error_rate == 0.1
    for _ in range(3):
        m.observe_request("pricey", 0.001, ok=False)
    assert m.stopped == {"pricey"} and "error rate 25.0% > max 20.0% after 12 calls" in m.stops["pricey"].reason


def test_stopped_arm_traffic_goes_to_control_and_replay_agrees() -> None:
    exp = _exp(max_cost_per_request_usd=0.01, min_requests=20)
    m = GuardrailMonitor(exp)
    served = []
    for i in range(400):
        a = assign(exp, f"user-{i}", stopped=m.stopped)
        assert a is not None
        m.observe_request(a.served, 0.05 if a.served == "pricey" else 0.001)
        served.append(a)
    pricey_users = [a for a in served if a.assigned == "pricey"]
    stopped_at = next(i for i, a in enumerate(pricey_users) if a.diverted)
    assert stopped_at == 20  # the 21st request of the arm is the first one diverted
    assert all(a.served == "control" for a in pricey_users[stopped_at:])
    assert all(arm_for_bucket(exp, bucket("g", a.unit_value)) == a.assigned for a in served)
    stops = replay(exp, [(a.served, 0.05 if a.served == "pricey" else 0.001, None) for a in served])
    assert stops["pricey"].after_requests == 20
