"""The logged traffic, the logging policy it implies, and off-policy evaluation on a real router's log."""

from __future__ import annotations

import numpy as np
import pytest

from llmroute.data.decision_log import DecisionLogStore
from llmroute.offpolicy.evaluate import evaluate_offpolicy
from llmroute.offpolicy.logged import logged_traffic
from llmroute.offpolicy.policies import parse_logged_target, router_picks
from llmroute.router.decision import QualityTarget
from tests.offpolicy.conftest import (
    N_PROMPTS,
    NO_FEEDBACK,
    NO_OUTCOME,
    REDACTED,
    SHARE,
    ProductionLog,
)


def read(log: ProductionLog, since=None, until=None):
    with DecisionLogStore(log.url, migrate=False) as store:
        return logged_traffic(store.joined(since=since, until=until))


def test_every_decision_read_is_used_or_counted_under_a_reason(production_log: ProductionLog) -> None:
    t = read(production_log)
    assert t.read == N_PROMPTS
    assert t.skipped == {  # a /route decision has no feedback either: counted under the first reason
        "no feedback (quality unknown)": len(NO_OUTCOME) + len(NO_FEEDBACK),
        "prompt redacted (the target policy cannot route it)": len(REDACTED),
    }
    assert len(t) == N_PROMPTS - len(NO_OUTCOME) - len(NO_FEEDBACK) - len(REDACTED)
    early = read(production_log, until=production_log.cutoff)
    late = read(production_log, since=production_log.cutoff)
    assert (early.read, late.read) == (100, N_PROMPTS - 100)
    assert len(early) + len(late) == len(t)


def test_the_logging_policy_is_recovered_from_the_record(production_log: ProductionLog) -> None:
    t = read(production_log)
    router = production_log.trained.router
    # the router's own pick, recomputed from the logged candidates, is what the router chooses today
    assert list(t.router_pick) == list(router_picks(router, t, production_log.cache).picks)
    # the served model's probability under the recovered policy is the logged propensity
    np.testing.assert_allclose(t.logging_probability(t.logged_model), t.propensity)
    explored = t.explored
    assert 0 < explored.sum() < len(t)
    np.testing.assert_allclose(t.exploration_share[t.propensity < 1], SHARE)
    # a model no request allowed has probability 0
    assert np.all(t.logging_probability(np.array(["no-such-model"] * len(t), dtype=object)) == 0.0)


def test_the_same_router_as_challenger_and_champion_differs_by_exactly_zero(production_log: ProductionLog) -> None:
    t = read(production_log)
    router = production_log.trained.router
    rep = evaluate_offpolicy(t, router, None, production_log.cache, n_boot=200)
    assert rep.challenger.agrees_with_logging_router == len(t) == rep.champion.agrees_with_logging_router
    assert rep.dr_quality_difference.value == 0.0 and rep.dr_cost_difference.value == 0.0
    assert rep.champion.unsupported == 0
    # on-policy realised numbers: the decisions that were not explored
    assert rep.champion_realised_decisions == int((~t.explored).sum())
    assert rep.champion_realised_quality.value == pytest.approx(t.quality[~t.explored].mean())


def test_estimates_bracket_the_true_value_known_from_the_benchmark(production_log: ProductionLog) -> None:
    """The cheapest-model policy differs from the logging router; its true value on these prompts is
    known (RouterBench has every model's outcome), and the DR interval must contain it."""
    t = read(production_log)
    router = production_log.trained.router
    log = production_log
    rep = evaluate_offpolicy(t, router, None, log.cache, n_boot=500)
    picks = router_picks(router, t, log.cache).picks
    truth = np.mean([log.quality[(p, m)] for p, m in zip(t.prompts, picks)])
    est = rep.challenger.quality
    assert est.dr.lo <= truth <= est.dr.hi
    assert est.ips.lo <= truth <= est.ips.hi
    cost_truth = np.mean([log.cost[(p, m)] for p, m in zip(t.prompts, picks)])
    assert rep.challenger.cost.dr.lo <= cost_truth <= rep.challenger.cost.dr.hi
    assert "\n" in rep.table() and "DR" in rep.table()


def test_a_log_without_exploration_warns_that_it_only_informs_about_agreeing_policies() -> None:
    from dataclasses import replace

    import pyarrow as pa

    from llmroute.data.decision_log.export import JOINED_SCHEMA

    rows = [dict.fromkeys(JOINED_SCHEMA.names) | {
        "decision_id": f"d{i}", "prompt": f"what is {i} + {i}?", "chosen_model": "a", "outcome_model": "a",
        "propensity": 1.0, "quality": float(i % 2), "cost_usd": 0.001, "router_version": "v1",
        "candidates": [{"model": "a", "probability": 0.9, "expected_cost_usd": 0.001, "eligible": True,
                        "excluded_by": None}],
        "constraints": "{}", "rule": "threshold", "knob": 0.5, "target": None} for i in range(40)]
    t = logged_traffic([pa.RecordBatch.from_pylist(rows, schema=JOINED_SCHEMA)])
    assert len(t) == 40 and not t.explored.any()
    assert np.all(t.exploration_share == 0.0)
    sub = t.subset(np.arange(10))
    assert len(sub) == 10 and replace(sub, read=1).read == 1


def test_logged_targets_are_parsed_back() -> None:
    assert parse_logged_target(str(QualityTarget(0.95))) == QualityTarget(0.95)
    assert parse_logged_target(str(QualityTarget(0.85, "absolute"))) == QualityTarget(0.85, "absolute")
    assert parse_logged_target(None) is None and parse_logged_target("whatever") is None


def _row(i: int, served: str, propensity: float, constraints: dict) -> dict:
    import json

    from llmroute.data.decision_log.export import JOINED_SCHEMA

    # threshold 0.5: a, b, c clear it (cheapest first: a, b, c), then d; e is not eligible
    cands = [(m, p, c, e) for m, p, c, e in [("a", 0.6, 0.001, True), ("b", 0.7, 0.002, True),
                                              ("c", 0.9, 0.003, True), ("d", 0.4, 0.0001, True),
                                              ("e", 0.99, 0.0001, False)]]
    return dict.fromkeys(JOINED_SCHEMA.names) | {
        "decision_id": f"d{i}", "prompt": f"what is {i} + {i}?", "chosen_model": served, "outcome_model": served,
        "propensity": propensity, "quality": 1.0, "cost_usd": 0.001, "router_version": "v1",
        "candidates": [{"model": m, "probability": p, "expected_cost_usd": c, "eligible": e,
                        "excluded_by": None if e else "in excluded_models"} for m, p, c, e in cands],
        "constraints": json.dumps(constraints), "rule": "threshold", "knob": 0.5, "target": None}


def test_support_under_uniform_and_runner_up_exploration() -> None:
    import pyarrow as pa

    from llmroute.data.decision_log.export import JOINED_SCHEMA

    runner_up = {"excluded_models": ["e"], "exploration": {"mode": "runner_up", "top_k": 2, "share": 0.4,
                                                           "models": ["b", "c"]}}
    rows = [
        _row(0, "a", 0.6, {"excluded_models": ["e"]}),  # uniform: the pick a with 1 - 0.4
        _row(1, "d", 0.4 / 3, {}),  # uniform: an explored one of b, c, d
        _row(2, "a", 0.6, runner_up),  # runner_up: the pick
        _row(3, "c", 0.2, runner_up),  # runner_up: an explored runner-up
        _row(4, "d", 0.2, runner_up),  # inconsistent: d is not in the logged set
        _row(5, "b", 0.2, {"exploration": {"mode": "epsilon_greedy", "share": 0.4, "models": ["b"]}}),  # unknown
    ]
    t = logged_traffic([pa.RecordBatch.from_pylist(rows, schema=JOINED_SCHEMA)])
    assert list(t.router_pick) == ["a"] * 6
    np.testing.assert_allclose(t.exploration_share, [0.4, 0.4, 0.4, 0.4, np.nan, np.nan])
    assert t.exploration_sets[:4] == (None, None, frozenset({"b", "c"}), frozenset({"b", "c"}))
    np.testing.assert_allclose(t.logging_probability(t.logged_model), t.propensity)
    prob = {m: t.logging_probability(np.array([m] * 6, dtype=object)) for m in "abcde"}
    np.testing.assert_allclose(prob["a"][:4], [0.6, 0.6, 0.6, 0.6])
    for m in "bcd":  # uniform: every other eligible model has share / 3
        np.testing.assert_allclose(prob[m][:2], [0.4 / 3, 0.4 / 3])
    np.testing.assert_allclose(prob["b"][2:4], [0.2, 0.2])
    np.testing.assert_allclose(prob["c"][2:4], [0.2, 0.2])
    np.testing.assert_allclose(prob["d"][2:4], [0.0, 0.0])  # ranked below the runner-ups: no support
    np.testing.assert_allclose(prob["e"][:4], [0.0] * 4)  # not eligible
    # unrecoverable records: only the served model's logged propensity is known
    assert prob["d"][4] == pytest.approx(0.2) and np.isnan(prob["b"][4]) and np.isnan(prob["a"][5])


def test_a_runner_up_log_made_by_the_service_path_is_reconstructed_exactly(
    production_log: ProductionLog, tmp_path
) -> None:
    from llmroute.data.decision_log import DecisionRecord, FeedbackRecord, OutcomeRecord
    from llmroute.router import policy
    from llmroute.serving.exploration import Explorer, explore

    router = production_log.trained.router
    explorer, k, share = Explorer(seed=3), 2, 0.4
    records: list = []
    served_models = []
    for i, prompt in enumerate(production_log.prompts[:60]):
        decision, propensity = explore(router.route(prompt), share, explorer, "runner_up", k)
        rec = DecisionRecord.from_decision(decision, prompt=prompt, decision_id=f"ru{i:03d}", propensity=propensity,
                                           source="chat")
        served = decision.model
        served_models.append(served)
        records += [rec, OutcomeRecord(rec.decision_id, served, True, cost_usd=production_log.cost[(prompt, served)]),
                    FeedbackRecord(rec.decision_id, production_log.quality[(prompt, served)])]
    url = f"sqlite:///{tmp_path / 'runner_up.sqlite'}"
    with DecisionLogStore(url) as store:
        store.write_many(records)
        t = logged_traffic(store.joined())
    assert len(t) == 60 and 0 < t.explored.sum() < 60
    np.testing.assert_allclose(t.logging_probability(t.logged_model), t.propensity)
    np.testing.assert_allclose(t.exploration_share, share)
    third = []
    for i in range(len(t)):
        cands = records[3 * i].candidates
        names = [c.model for c in cands]
        order = policy.ranking(t.rules[i], [c.probability for c in cands], [c.expected_cost_usd for c in cands],
                               [c.eligible for c in cands], t.knobs[i])
        # the logged set is the rule's runner-ups after the logging router's pick, recomputed from the log
        assert names[order[0]] == t.router_pick[i]
        assert t.exploration_sets[i] == frozenset(names[j] for j in order[1:k + 1])
        third.append(names[order[k + 1]] if len(order) > k + 1 else t.router_pick[i])
    # a policy choosing the rule's third-best model has no support where one exists (uniform would have)
    third = np.array(third, dtype=object)
    p3 = t.logging_probability(third)
    assert np.all(p3[third != t.router_pick] == 0.0) and (third != t.router_pick).any()
    rep = evaluate_offpolicy(t, router, None, production_log.cache, n_boot=50)
    assert rep.challenger.unsupported == 0 and rep.challenger.agrees_with_logging_router == len(t)
