"""Exploration: a bounded share of decisions served by another eligible model, with its propensity logged."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from llmroute.data.decision_log import DecisionLogStore, DecisionRecord, default_db_url
from llmroute.router import policy
from llmroute.router.decision import Candidate, Decision
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.decide import choose
from llmroute.serving.exploration import Explorer, exploration_set, runner_ups
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMROUTE_SERVE_DECISION_LOG_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def prompts(trained: Trained) -> list[str]:
    return [str(p) for p in sorted(trained.logs["prompt"].unique())[:10]]


def _app(router: Router, **kw: Any) -> TestClient:
    settings = ServeSettings(**{"model": "/nonexistent/router", "api_keys": [KEY], **kw})
    return TestClient(create_app(settings, router), raise_server_exceptions=False)


def _logged(home: Path) -> pd.DataFrame:
    with DecisionLogStore(default_db_url(home)) as store:
        frames = [b.to_pandas() for b in store.joined()]
    return pd.concat(frames, ignore_index=True).set_index("decision_id")


def _eligible_others(routed: dict[str, Any], model: str) -> list[str]:
    return [c["model"] for c in routed["candidates"] if c["eligible"] and c["model"] != model]


def _decision(*eligible: bool) -> Decision:
    cands = tuple(Candidate(f"m{i}", 0.5, 0.01 * i, e, None if e else "cost") for i, e in enumerate(eligible))
    return Decision("m0", cands, "the router's reason", True, "threshold", 0.5, "v1")


# ---- settings -----------------------------------------------------------------------------------------


def test_exploration_is_off_by_default() -> None:
    s = ServeSettings()
    assert s.exploration_share == 0.0 and s.exploration_by_tenant == {} and s.exploration_seed is None
    assert s.exploration_share_for("anyone") == 0.0 and s.exploration_share_for(None) == 0.0


@pytest.mark.parametrize("share", [-0.1, 0.51, 1.0, float("nan")])
def test_invalid_share_rejected(share: float) -> None:
    with pytest.raises(ValidationError, match="exploration_share"):
        ServeSettings(exploration_share=share)
    with pytest.raises(ValidationError, match="exploration share of tenant 't1'"):
        ServeSettings(exploration_by_tenant={"t1": share})


def test_share_from_environment_and_tenant_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_SHARE", "0.1")
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_BY_TENANT", '{"a": 0.5, "b": 0}')
    s = ServeSettings()
    assert s.exploration_share_for("a") == 0.5 and s.exploration_share_for("b") == 0.0
    assert s.exploration_share_for("c") == 0.1 and s.exploration_share_for(None) == 0.1
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_SHARE", "0.9")
    with pytest.raises(ValidationError):
        ServeSettings()


def test_exploration_mode_defaults_to_uniform_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ServeSettings()
    assert s.exploration_mode == "uniform" and s.exploration_top_k == 2 and s.exploration_mode_by_tenant == {}
    assert s.exploration_mode_for("anyone") == "uniform"
    with pytest.raises(ValidationError, match="exploration_mode"):
        ServeSettings(exploration_mode="greedy")
    with pytest.raises(ValidationError, match="exploration_top_k"):
        ServeSettings(exploration_top_k=0)
    with pytest.raises(ValidationError, match="exploration_mode_by_tenant"):
        ServeSettings(exploration_mode_by_tenant={"t1": "greedy"})
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_MODE", "runner_up")
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_TOP_K", "3")
    monkeypatch.setenv("LLMROUTE_SERVE_EXPLORATION_MODE_BY_TENANT", '{"a": "uniform"}')
    s = ServeSettings()
    assert s.exploration_top_k == 3
    assert s.exploration_mode_for("a") == "uniform" and s.exploration_mode_for("b") == "runner_up"
    assert s.exploration_mode_for(None) == "runner_up"


# ---- the policy ---------------------------------------------------------------------------------------


def test_choose_without_exploration_keeps_the_router_pick() -> None:
    d = _decision(True, True, True)
    assert choose(d) == (d, 1.0)
    assert choose(d, 0.0, Explorer(1)) == (d, 1.0)


def test_choose_with_no_other_eligible_model_has_propensity_one() -> None:
    d = _decision(True, False, False)
    assert all(choose(d, 0.5, Explorer(seed)) == (d, 1.0) for seed in range(50))


def test_choose_propensities_and_marking() -> None:
    d = _decision(True, True, False, True)  # m1 and m3 are the other eligible models; m2 is not
    explorer = Explorer(123)
    seen: dict[str, int] = {}
    for _ in range(2000):
        served, p = choose(d, 0.3, explorer)
        seen[served.model] = seen.get(served.model, 0) + 1
        if served.model == "m0":
            assert served is d and p == pytest.approx(0.7)
        else:
            assert served.model in ("m1", "m3") and p == pytest.approx(0.15)
            assert served.extra["explored"] is True and served.extra["router_model"] == "m0"
            assert served.reason.startswith("exploration:") and "m0" in served.reason
            assert served.candidates == d.candidates
    assert "m2" not in seen
    assert abs(seen.get("m1", 0) / 2000 - 0.15) < 0.04 and abs(seen.get("m3", 0) / 2000 - 0.15) < 0.04


def test_seeded_explorer_is_deterministic() -> None:
    d = _decision(True, True, True, True)
    a, b = Explorer(7), Explorer(7)
    assert [choose(d, 0.4, a)[0].model for _ in range(100)] == [choose(d, 0.4, b)[0].model for _ in range(100)]


def _ranked_decision() -> Decision:
    """Threshold 0.55: m1, m2, m0 clear it (cheapest first: m1, m2, m0), then m4, m3 by probability;
    m5 (cheap and best) is not eligible. The router picks m1; its runner-ups are m2, m0, m4, m3."""
    spec = [(0.9, 0.05, True), (0.6, 0.01, True), (0.7, 0.02, True), (0.3, 0.001, True), (0.5, 0.004, True),
            (0.95, 0.001, False)]
    cands = tuple(Candidate(f"m{i}", p, c, e, None if e else "not in allowed_models") for i, (p, c, e) in enumerate(spec))
    return Decision("m1", cands, "the router's reason", True, "threshold", 0.55, "v1")


def test_runner_ups_follow_the_rules_ranking_and_eligibility() -> None:
    d = _ranked_decision()
    assert runner_ups(d, 2) == ["m2", "m0"]
    assert runner_ups(d, 1) == ["m2"]
    assert runner_ups(d, 10) == ["m2", "m0", "m4", "m3"]  # k' = 4 < k: all the other eligible models
    assert exploration_set(d, "runner_up", 10) == sorted(exploration_set(d), key=runner_ups(d, 10).index)
    utility = Decision("m1", d.candidates, "", True, "utility", 5.0, "v1")  # utilities .65 .55 .6 .295 .48
    assert runner_ups(utility, 3) == ["m0", "m2", "m4"]
    static = Decision("m3", d.candidates, "", True, "budget_rule", 0.0, "v1")  # not a router rule: by probability
    assert runner_ups(static, 2) == ["m0", "m2"]
    with pytest.raises(ValueError, match="top_k"):
        exploration_set(d, "runner_up", 0)
    with pytest.raises(ValueError, match="unknown exploration mode"):
        exploration_set(d, "greedy")


def test_runner_up_propensities_are_exact_and_the_explored_share_is_binomial() -> None:
    d, eps, n = _ranked_decision(), 0.4, 4000
    explorer = Explorer(2026)
    seen: dict[str, int] = {}
    for _ in range(n):
        served, p = choose(d, eps, explorer, "runner_up", 2)
        seen[served.model] = seen.get(served.model, 0) + 1
        logged = served.extra["exploration"]
        assert logged == {"mode": "runner_up", "top_k": 2, "share": eps, "models": ["m2", "m0"]}
        if served.model == "m1":
            assert p == 1.0 - eps and "explored" not in served.extra
        else:
            assert served.model in ("m2", "m0") and p == eps / 2
            assert served.extra["explored"] is True and served.extra["router_model"] == "m1"
            assert "runner-up model(s) m2, m0" in served.reason
    assert set(seen) == {"m1", "m2", "m0"}  # never m3, m4 (ranked lower) nor m5 (not eligible)
    sigma = math.sqrt(n * eps * (1 - eps))
    assert abs(seen["m2"] + seen["m0"] - eps * n) <= 3.5 * sigma
    half = math.sqrt(n * eps / 2 * (1 - eps / 2))
    assert abs(seen["m2"] - eps / 2 * n) <= 3.5 * half and abs(seen["m0"] - eps / 2 * n) <= 3.5 * half


def test_runner_up_with_fewer_eligible_models_than_k() -> None:
    d = _decision(True, False, True, False)  # only m2 besides the pick
    served = [choose(d, 0.5, Explorer(seed), "runner_up", 3) for seed in range(200)]
    assert {s.model for s, _ in served} == {"m0", "m2"}
    assert all(p == (0.5 if s.model == "m0" else 0.5 / 1) for s, p in served)
    assert all(s.extra["exploration"]["models"] == ["m2"] for s, _ in served)
    alone = _decision(True, False, False)
    assert choose(alone, 0.5, Explorer(1), "runner_up", 2) == (alone, 1.0)


def test_uniform_default_is_unchanged() -> None:
    """Same draws as the uniform exploration before the modes existed, nothing added to the decision."""
    d = _decision(True, True, False, True, True)
    explorer, rng = Explorer(99), random.Random(99)
    others = ["m1", "m3", "m4"]
    for _ in range(500):
        served, p = choose(d, 0.3, explorer)
        want = "m0" if rng.random() >= 0.3 else rng.choice(others)
        assert served.model == want and p == (1.0 - 0.3 if want == "m0" else 0.3 / 3)
        assert "exploration" not in served.extra
        if want == "m0":
            assert served is d
        record = DecisionRecord.from_decision(served, prompt="p", propensity=p, constraints={"max_cost_usd": 1.0})
        assert record.constraints == {"max_cost_usd": 1.0}


def test_the_record_carries_the_runner_up_policy_in_its_constraints() -> None:
    served, p = choose(_ranked_decision(), 0.4, Explorer(5), "runner_up", 2)
    record = DecisionRecord.from_decision(served, prompt="p", propensity=p, constraints={"max_cost_usd": 1.0})
    assert record.constraints == {
        "max_cost_usd": 1.0, "exploration": {"mode": "runner_up", "top_k": 2, "share": 0.4, "models": ["m2", "m0"]}}


# ---- the service --------------------------------------------------------------------------------------


def test_share_zero_never_explores(home: Path, router: Router, prompts: list[str]) -> None:
    with _app(router, exploration_seed=1) as c:
        routed = [c.post("/route", json={"prompt": p}, headers=AUTH).json() for p in prompts * 3]
    assert not any(r["explored"] for r in routed)
    assert not any(r["reason"].startswith("exploration") for r in routed)
    log = _logged(home)
    assert len(log) == len(routed) and (log["propensity"] == 1.0).all()


def test_route_explores_within_constraints(home: Path, router: Router, prompts: list[str]) -> None:
    eps, n = 0.2, 300
    with _app(router) as c:  # a cost cap that excludes the expensive models of the first prompt
        probe = c.post("/route", json={"prompt": prompts[0]}, headers=AUTH).json()
    costs = sorted(cand["expected_cost_usd"] for cand in probe["candidates"])
    cap = costs[len(costs) // 2]
    (home / "decisions.sqlite").unlink()
    results: list[dict[str, Any]] = []
    with _app(router, exploration_share=eps, exploration_seed=20261128) as c:
        for i in range(n):
            r = c.post("/route", json={"prompt": prompts[i % len(prompts)], "max_cost_usd": cap}, headers=AUTH)
            assert r.status_code == 200, r.text
            results.append(r.json())
    log = _logged(home)
    assert len(log) == n
    assert any(not cand["eligible"] for r in results for cand in r["candidates"])  # the cap bites
    explorable = 0
    explored = 0
    for r in results:
        by_model = {cand["model"]: cand for cand in r["candidates"]}
        served = by_model[r["model"]]
        assert served["eligible"] and served["expected_cost_usd"] <= cap + 1e-12
        row = log.loc[r["decision_id"]]
        assert row["chosen_model"] == r["model"]
        if r["explored"]:
            router_model = r["reason"].split("instead of the router's choice ")[1].split(" ")[0]
            k = len(_eligible_others(r, router_model))
            assert r["model"] != router_model and r["reason"].startswith("exploration:")
            assert row["propensity"] == pytest.approx(eps / k, abs=0, rel=1e-12)
            explorable += 1
            explored += 1
        else:
            k = len(_eligible_others(r, r["model"]))
            assert row["propensity"] == (1.0 - eps if k else 1.0)
            explorable += bool(k)
    assert explorable > n // 2
    sigma = math.sqrt(explorable * eps * (1 - eps))
    assert abs(explored - eps * explorable) <= 3.5 * sigma, (explored, explorable)


def test_per_tenant_share(home: Path, router: Router, prompts: list[str]) -> None:
    settings = {"exploration_share": 0.0, "exploration_by_tenant": {"lab": 0.5}, "exploration_seed": 3}
    with _app(router, **settings) as c:
        lab = [c.post("/route", json={"prompt": p, "tenant": "lab"}, headers=AUTH).json() for p in prompts * 4]
        prod = [c.post("/route", json={"prompt": p, "tenant": "prod"}, headers=AUTH).json() for p in prompts * 2]
        anon = [c.post("/route", json={"prompt": p}, headers=AUTH).json() for p in prompts * 2]
        metrics = c.get("/metrics", headers=AUTH).text
    assert not any(r["explored"] for r in prod + anon)
    assert 5 <= sum(r["explored"] for r in lab) <= 35
    log = _logged(home)
    assert (log.loc[[r["decision_id"] for r in prod + anon], "propensity"] == 1.0).all()
    for r in lab:
        p = log.loc[r["decision_id"], "propensity"]
        if r["explored"]:
            router_model = r["reason"].split("instead of the router's choice ")[1].split(" ")[0]
            assert p == pytest.approx(0.5 / len(_eligible_others(r, router_model)))
        else:
            assert p == (0.5 if _eligible_others(r, r["model"]) else 1.0)
    explored_total = sum(
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith("llmroute_explored_total{")
    )
    assert explored_total == sum(r["explored"] for r in lab)


def test_route_explores_runner_ups_within_constraints_and_logs_them(
    home: Path, router: Router, prompts: list[str]
) -> None:
    eps, n, k = 0.4, 200, 2
    with _app(router) as c:  # a cost cap that excludes the expensive models of the first prompt
        probe = c.post("/route", json={"prompt": prompts[0]}, headers=AUTH).json()
    costs = sorted(cand["expected_cost_usd"] for cand in probe["candidates"])
    cap = costs[len(costs) * 2 // 3]
    (home / "decisions.sqlite").unlink()
    settings = {"exploration_share": eps, "exploration_mode": "runner_up", "exploration_top_k": k,
                "exploration_seed": 11, "exploration_mode_by_tenant": {"legacy": "uniform"}}
    with _app(router, **settings) as c:
        results = [c.post("/route", json={"prompt": prompts[i % len(prompts)], "max_cost_usd": cap},
                          headers=AUTH).json() for i in range(n)]
        legacy = [c.post("/route", json={"prompt": p, "tenant": "legacy"}, headers=AUTH).json() for p in prompts]
    log = _logged(home)
    assert len(log) == n + len(prompts)
    assert any(not cand["eligible"] for r in results for cand in r["candidates"])  # the cap bites
    explored = explorable = 0
    for r in results:
        row = log.loc[r["decision_id"]]
        served = next(cand for cand in r["candidates"] if cand["model"] == r["model"])
        assert served["eligible"] and served["expected_cost_usd"] <= cap + 1e-12
        router_model = (r["reason"].split("instead of the router's choice ")[1].split(" ")[0]
                        if r["explored"] else r["model"])
        names = [cand["model"] for cand in r["candidates"]]
        order = policy.ranking(
            r["rule"], [cand["probability"] for cand in r["candidates"]],
            [cand["expected_cost_usd"] for cand in r["candidates"]], [cand["eligible"] for cand in r["candidates"]],
            r["knob"], names.index(router_model),
        )
        want = [names[j] for j in order[1:k + 1]]
        exploration = json.loads(row["constraints"]).get("exploration")
        if not want:
            assert exploration is None and row["propensity"] == 1.0
            continue
        explorable += 1
        assert exploration == {"mode": "runner_up", "top_k": k, "share": eps, "models": want}
        if r["explored"]:
            explored += 1
            assert r["model"] in want and row["propensity"] == pytest.approx(eps / len(want), abs=0, rel=1e-12)
        else:
            assert row["propensity"] == 1.0 - eps
    assert explorable > n // 2
    assert abs(explored - eps * explorable) <= 3.5 * math.sqrt(explorable * eps * (1 - eps)), (explored, explorable)
    for r in legacy:  # the tenant's override: uniform, logged as before
        assert "exploration" not in json.loads(log.loc[r["decision_id"], "constraints"])
