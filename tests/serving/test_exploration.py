"""Exploration: a bounded share of decisions served by another eligible model, with its propensity logged."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from llmroute.data.decision_log import DecisionLogStore, default_db_url
from llmroute.router.decision import Candidate, Decision
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.decide import choose
from llmroute.serving.exploration import Explorer
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
