"""The decision-rule seam: a rule registered here, and nowhere else, is trained, routed with, evaluated
and recovered from the decision log by off-policy evaluation, with no change to any other module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmroute.router import decision_rules, policy
from llmroute.router.decision_rules import DecisionRule, UnknownRuleError, register_rule, unregister_rule
from tests.router.helpers import ROUTERBENCH, HashEmbedder, write_slice
from tests.tiers import slow_fixture

P = np.array([[0.9, 0.6, 0.3], [0.2, 0.7, 0.68]])
C = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])


class RegretRule(DecisionRule):
    """The cheapest eligible model whose P(meets target) is within ``knob`` of the best eligible one."""

    name = "test_regret"
    grid = np.round(np.linspace(1.0, 0.0, 21), 4)  # a big allowed shortfall is the cheap end

    def _choose(
        self, probs: np.ndarray, costs: np.ndarray, mask: np.ndarray, knob: float
    ) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(mask, probs, -np.inf)
        ok = mask & (p >= p.max(axis=1, keepdims=True) - knob - 1e-12)
        return np.argmin(np.where(ok, costs, np.inf), axis=1), np.ones(len(p), dtype=bool)

    def explain(self, knob: float, cleared: bool) -> str:
        return f"cheapest eligible model within {knob:.2f} of the best P(meets target)"


@pytest.fixture
def regret() -> Iterator[str]:
    register_rule(RegretRule)
    try:
        yield RegretRule.name
    finally:
        unregister_rule(RegretRule.name)


def test_a_registered_rule_is_applied_by_name(regret: str) -> None:
    assert regret in policy.rule_names() and policy.rule_names()[:2] == ("threshold", "utility")
    idx, cleared = policy.choose(regret, P, C, np.ones_like(P, dtype=bool), 0.05)
    assert idx.tolist() == [0, 2] and cleared.all()  # row 2: 0.68 is within 0.05 of 0.7 and cheaper
    mask = np.array([[False, True, True], [False, False, False]])
    idx, cleared = policy.choose(regret, P, C, mask, 0.0)
    assert idx.tolist() == [1, -1] and cleared.tolist() == [True, False]
    assert policy.ranking(regret, P[1], C[1], np.ones(3, dtype=bool), 0.05) == [2, 1, 0]
    assert policy.sweep(regret, P, C).shape == (2, len(RegretRule.grid))


def test_registry_refuses_clashes_and_unknown_names(regret: str) -> None:
    register_rule(RegretRule)  # the same class again: a no-op

    class Other(RegretRule):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_rule(Other)
    with pytest.raises(ValueError, match="cannot be unregistered"):
        unregister_rule("threshold")
    want = r"unknown rule 'nope'; expected one of \('threshold', 'utility', 'test_regret'\)"
    with pytest.raises(UnknownRuleError, match=want):
        policy.choose("nope", P, C, np.ones_like(P, dtype=bool), 0.5)

    class Nameless(DecisionRule):
        grid = np.array([0.0])

        def _choose(self, probs, costs, mask, knob):  # type: ignore[no-untyped-def]
            raise AssertionError

        def explain(self, knob: float, cleared: bool) -> str:
            return ""

    with pytest.raises(ValueError, match="has no name"):
        register_rule(Nameless)
    assert decision_rules.is_rule(regret) and not decision_rules.is_rule("nope") and not decision_rules.is_rule(None)


@dataclass
class Trained:
    router: object
    train: Path
    test: Path
    home: Path


@pytest.fixture
@slow_fixture("trains a small router (hash embedder, 120 prompts)")
def trained_with_regret(regret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trained:
    """A small router trained while the third rule is registered (a hash embedder keeps it quick)."""
    from llmroute.config import load_settings
    from llmroute.training import train as train_mod

    home = tmp_path / "home"
    train = write_slice(ROUTERBENCH / "train.parquet", tmp_path / "train.parquet", 120)
    test = write_slice(ROUTERBENCH / "test.parquet", tmp_path / "test.parquet", 60, seed=1)
    embedder = HashEmbedder(dim=32)
    monkeypatch.setattr(train_mod, "load_embedder", lambda spec, _dir: embedder)
    router, _ = train_mod.train_router(
        train, load_settings(home=home), train_mod.TrainConfig(embedder="hash", with_scorer=False),
        out_dir=home / "routers" / "regret",
    )
    return Trained(router, train, test, home)


@pytest.mark.slow
def test_a_third_rule_is_trained_routed_evaluated_and_replayed_off_policy(
    trained_with_regret: Trained, tmp_path: Path
) -> None:
    from llmroute.data.decision_log import DecisionLogStore, DecisionRecord, FeedbackRecord, OutcomeRecord
    from llmroute.experiments.report import run_evaluation
    from llmroute.offpolicy.evaluate import evaluate_offpolicy
    from llmroute.offpolicy.logged import logged_traffic
    from llmroute.router.decision import RouteQuery
    from llmroute.serving.exploration import Explorer, explore

    router = trained_with_regret.router
    rule = RegretRule.name
    # training: a knob table for every registered rule, the third one included
    assert set(router.knob_tables) == {"threshold", "utility", rule}  # type: ignore[attr-defined]
    assert router.knob_tables[rule].knobs == tuple(float(k) for k in RegretRule.grid)  # type: ignore[attr-defined]

    # routing: by name, with the rule's knob for the target and its own reason text
    test_df = pd.read_parquet(trained_with_regret.test)
    prompts = [str(p) for p in test_df.drop_duplicates("prompt_id")["prompt"]][:40]
    d = router.route_many([RouteQuery(prompts[0], rule=rule)])[0]  # type: ignore[attr-defined]
    assert d.rule == rule and d.reason.startswith("cheapest eligible model within ")
    probs = np.array([[c.probability for c in d.candidates]])
    costs = np.array([[c.expected_cost_usd for c in d.candidates]])
    want = RegretRule().choose(probs, costs, np.array([[c.eligible for c in d.candidates]]), d.knob)[0][0]
    assert d.model == router.models[int(want)]  # type: ignore[attr-defined]
    assert d.knob == router.knob_tables[rule].knob_for(router.default_target)[0]  # type: ignore[attr-defined]

    # evaluation: the rule's curve is swept over the router's predictions beside the default rule's
    report = run_evaluation(router, trained_with_regret.test, tmp_path / "report", tmp_path / "emb.sqlite",  # type: ignore[arg-type]
                            n_boot=20)
    assert f"learned_{rule}" in report["routers"]
    assert report["routers"][f"learned_{rule}"]["aiq"] is not None

    # off-policy: decisions made with the rule (runner-up exploration ranks by the rule) are recovered
    # from the log: the logging router's pick and every served model's propensity
    explorer, records = Explorer(seed=5), []
    for i, prompt in enumerate(prompts):
        decision, propensity = explore(router.route_many([RouteQuery(prompt, rule=rule)])[0], 0.5, explorer,  # type: ignore[attr-defined]
                                       "runner_up", 2)
        rec = DecisionRecord.from_decision(decision, prompt=prompt, decision_id=f"r{i:03d}", propensity=propensity,
                                           source="chat")
        records += [rec, OutcomeRecord(rec.decision_id, decision.model, True, cost_usd=0.001),
                    FeedbackRecord(rec.decision_id, 1.0)]
    with DecisionLogStore(f"sqlite:///{tmp_path / 'log.sqlite'}") as store:
        store.write_many(records)
        traffic = logged_traffic(store.joined())
    assert len(traffic) == len(prompts) and set(traffic.rules) == {rule}
    assert 0 < traffic.explored.sum() < len(prompts)
    picks = [d.model for d in router.route_many([RouteQuery(p, rule=rule) for p in prompts])]  # type: ignore[attr-defined]
    assert list(traffic.router_pick) == picks
    np.testing.assert_allclose(traffic.logging_probability(traffic.logged_model), traffic.propensity)
    rep = evaluate_offpolicy(traffic, router, None, tmp_path / "emb.sqlite", n_boot=20)  # type: ignore[arg-type]
    assert rep.decisions_used == len(prompts)
