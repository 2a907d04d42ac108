"""A live A/B test end to end over HTTP on 127.0.0.1: the service with an experiment, the replay
server as every provider, feedback, a guardrail that stops an arm, and then `ab report` on the log."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from llmroute.abtest.assignment import arm_for_bucket, bucket
from llmroute.abtest.experiment import load_experiment
from llmroute.cli import app
from llmroute.data.decision_log import DecisionLogStore
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from tests.abtest.conftest import WriteExperiment
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

USERS = 18


def test_live_ab_through_the_service(
    trained: Trained, router: Router, live: list[LiveServer], write_experiment: WriteExperiment, tmp_path: Path
) -> None:
    path = write_experiment(
        "live",
        arms=[
            {"name": "learned", "control": True, "weight": 1, "router": str(trained.folder)},
            {"name": "seed-budget", "weight": 1, "rules": {"kind": "budget", "budget_usd": 0.005}},
            {"name": "gpt4", "weight": 1, "always": "gpt-4-1106-preview"},
        ],
        # a gpt-4 call costs more than $0.003 on these logs; the cheap tier of the budget rule at most $0.0011
        guardrails={"max_cost_per_request_usd": 0.002, "min_requests": 4},
        analysis={"min_requests_per_arm": 10, "n_boot": 200},
    )
    exp = load_experiment(path)
    db = tmp_path / "decisions.sqlite"
    rep = LiveServer(create_replay_app(trained.logs)).start()
    live.append(rep)
    settings = ServeSettings(
        model=str(trained.folder), default_base_url=f"{rep.url}/v1", decision_log_url=f"sqlite:///{db}",
        experiment=str(path), cascade_confidence=0.0, provider_retries=0,
    )
    svc = LiveServer(create_app(settings, router, core=trained.core)).start()
    live.append(svc)

    counts = trained.logs.groupby("prompt")["model"].nunique()
    prompts = [str(p) for p in counts[counts == len(router.models)].index[:USERS]]
    served: dict[str, str] = {}  # decision id -> arm served
    feedback: dict[str, list[float]] = {a.name: [] for a in exp.arms}
    with httpx.Client(base_url=svc.url, timeout=60) as client:
        for i, prompt in enumerate(prompts):
            user = f"user-{i}"
            assigned = arm_for_bucket(exp, bucket("live", user))
            first = client.post("/route", json={"prompt": prompt, "user": user}).json()
            second = client.post("/route", json={"prompt": prompt, "user": user}).json()
            assert first["experiment"] == second["experiment"] == "live"
            if assigned != "gpt4":  # sticky; gpt4 users move to the control once the guardrail stops gpt4
                assert first["arm"] == second["arm"] == assigned
            else:
                assert {first["arm"], second["arm"]} <= {"gpt4", "learned"}
            if first["arm"] == "gpt4":
                assert first["model"] == "gpt-4-1106-preview" and first["router_version"] == "always:gpt-4-1106-preview"
            if first["arm"] == "learned":
                assert first["router_version"] == router.version
            chat = client.post("/v1/chat/completions", json={
                "model": "llmroute", "messages": [{"role": "user", "content": prompt}], "user": user,
            })
            assert chat.status_code == 200, chat.text
            body = chat.json()
            info = body["llmroute"]
            arm = info["decision"]["arm"]
            served.update({first["decision_id"]: first["arm"], second["decision_id"]: second["arm"],
                           info["decision_id"]: arm})
            quality = float(body["x_llmroute_quality"])
            fb = client.post("/feedback", json={"decision_id": info["decision_id"], "quality": quality})
            assert fb.status_code == 202, fb.text
            feedback[arm].append(quality)
        anonymous = client.post("/route", json={"prompt": prompts[0]}).json()
        assert anonymous["arm"] in {"seed-budget", "learned"}  # no user: a random arm (gpt4 is stopped by now)
        served[anonymous["decision_id"]] = anonymous["arm"]
    svc.stop()  # the lifespan writes everything queued before it ends

    with DecisionLogStore(f"sqlite:///{db}") as store:
        logged = {d.decision_id: d.arm for batch in store.iter_decisions() for d in batch}
    diverted = {k for k, v in logged.items() if v == "live:learned<-gpt4"}
    assert {k: v.split(":")[1].split("<-")[0] for k, v in logged.items() if v} == served
    assert diverted and len(logged) == 3 * USERS + 1

    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["ab", "report", str(path), "--db", f"sqlite:///{db}", "--out", str(out),
                                  "--format", "json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    arms = report["arms"]
    assert {a: m["requests"] for a, m in arms.items()} == dict(Counter(served.values()))
    for arm, qs in feedback.items():
        assert arms[arm]["feedback"] == len(qs)
        if qs:
            assert arms[arm]["quality"] == pytest.approx(sum(qs) / len(qs))
    assert arms["gpt4"]["outcomes"] >= 1 and arms["gpt4"]["mean_cost_usd"] > 1e-6
    assert arms["learned"]["diverted_in"] == len(diverted)
    assert "seed-budget" not in report["guardrails"]["stops_recomputed"]
    assert report["guardrails"]["stops_recomputed"]["gpt4"]["after_requests"] == 4
    assert report["guardrails"]["diverted_to_control"] == {"gpt4": len(diverted)}
    assert report["enough_data"] is False and report["verdict"][0].startswith("Not enough data yet")
    assert set(report["comparisons"]) == {"seed-budget", "gpt4"}
    md = (out / "report.md").read_text()
    assert "gpt4: stopped (mean cost per request" in md and "## Differences against the control" in md


def test_route_without_experiment_has_no_arm(trained: Trained, router: Router) -> None:
    from starlette.testclient import TestClient

    settings = ServeSettings(model=str(trained.folder), decision_log_url="off")
    with TestClient(create_app(settings, router, core=trained.core)) as client:
        body = client.post("/route", json={"prompt": "What is 2 + 2?", "user": "u", "session": "s"}).json()
    assert body["arm"] is None and body["experiment"] is None and body["model"] in router.models


def test_arm_that_does_not_fit_the_served_router_is_a_clear_server_error(
    trained: Trained, router: Router, write_experiment: WriteExperiment
) -> None:
    from starlette.testclient import TestClient

    path = write_experiment(arms=[{"name": "control", "control": True, "always": "gpt-4-1106-preview"},
                                  {"name": "other", "always": "not-a-served-model"}])
    settings = ServeSettings(model=str(trained.folder), decision_log_url="off", experiment=str(path))
    exp = load_experiment(path)
    users = {arm_for_bucket(exp, bucket("exp", f"u{i}")): f"u{i}" for i in range(100)}
    with TestClient(create_app(settings, router, core=trained.core)) as client:
        r = client.post("/route", json={"prompt": "What is 2 + 2?", "user": users["other"]})
        ok = client.post("/route", json={"prompt": "What is 2 + 2?", "user": users["control"]})
    assert r.status_code == 500 and r.json()["error"]["type"] == "experiment_misconfigured"
    assert "arm 'other'" in r.json()["error"]["message"] and "not-a-served-model" in r.json()["error"]["message"]
    assert ok.status_code == 200 and ok.json()["arm"] == "control" and ok.json()["model"] == "gpt-4-1106-preview"
