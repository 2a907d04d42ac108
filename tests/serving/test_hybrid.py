"""Hybrid deployment end to end over HTTP: local models on one replay server (with injected failures and
timeouts), API models on another behind a spy, a user catalog marking the local ones, tenants with
data policies. The spy fails the test if a local_only prompt ever reaches the API server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

LOCALS = ("mistralai/mistral-7b-chat", "meta/llama-2-70b-chat")


class Spy:
    """ASGI wrapper recording the user messages of every chat request that reaches the wrapped provider."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prompts: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages, body, more = [], b"", True
        while more:
            m = await receive()
            messages.append(m)
            body += m.get("body", b"")
            more = m.get("more_body", False)
        if body:
            for msg in json.loads(body).get("messages", []):
                self.prompts.append(str(msg.get("content")))

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def write_catalog(router: Router, path: Path, local: tuple[str, ...], **extra: dict[str, Any]) -> Path:
    """A user catalog with the router's entries for ``local`` marked ``local: true`` (plus ``extra`` fields)."""
    entries = []
    for name in local:
        spec = router.specs[name]
        assert spec is not None
        fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(spec).items()}
        fields.update(local=True, provider="self-hosted", **extra.get(name, {}))
        entries.append({k: v for k, v in fields.items() if v is not None or not k.startswith("rate_limit")})
    path.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    return path


@dataclasses.dataclass
class Hybrid:
    client: httpx.AsyncClient
    spy: Spy
    service: LiveServer
    db: Path


def start_hybrid(
    trained: Trained, router: Router, live: list[LiveServer], tmp: Path, local_faults: dict[str, float],
    catalog_extra: dict[str, dict[str, Any]] | None = None, **serve: Any,
) -> tuple[str, Spy, Path]:
    local = LiveServer(create_replay_app(trained.logs, seed=7, timeout_s=5.0, **local_faults)).start()
    spy = Spy(create_replay_app(trained.logs))
    api = LiveServer(spy).start()
    live.extend([local, api])
    db = tmp / "decisions.sqlite"
    settings = ServeSettings(**{
        "model": str(trained.folder), "default_base_url": f"{api.url}/v1",
        "provider_base_urls": dict.fromkeys(LOCALS, f"{local.url}/v1"),
        "catalog": str(write_catalog(router, tmp / "catalog.yaml", LOCALS, **(catalog_extra or {}))),
        "data_policy_by_tenant": {"secure": "local_only"},
        "provider_timeout_s": 0.3, "provider_retries": 1, "retry_backoff_s": 0.01,
        "decision_log_url": f"sqlite:///{db}", **serve,
    })
    svc = LiveServer(create_app(settings, router, core=trained.core)).start()
    live.append(svc)
    return svc.url, spy, db


def _prompts(trained: Trained, n: int) -> list[str]:
    counts = trained.logs.groupby("prompt")["model"].nunique()
    full = [str(p) for p in counts[counts == len(trained.router.models)].index]
    return full[:n]


def _body(prompt: str, **llmroute: Any) -> dict[str, Any]:
    return {"model": "llmroute", "messages": [{"role": "user", "content": prompt}], "llmroute": llmroute}


@pytest.mark.slow
def test_local_only_never_reaches_an_api_under_faults(
    trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    """Every way a prompt can leave -- cascade escalations on failure, timeout and low confidence, retries,
    ensembles, exploration, an A/B arm that always picks an API model, streaming -- under 20% failures and
    10% timeouts of the local models: no local_only prompt reaches the API server; normal tenants fail over."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "hybrid", "unit": "user",
        "arms": [{"name": "learned", "control": True, "weight": 1, "router": str(trained.folder)},
                 {"name": "gpt4", "weight": 1, "always": "gpt-4-1106-preview"}],
    }))
    url, spy, db = start_hybrid(
        trained, router, live, tmp_path, {"failure_rate": 0.2, "timeout_rate": 0.1},
        cascade_confidence=0.95, cascade_max_attempts=4, exploration_share=0.5, exploration_seed=3,
        experiment=str(exp),
    )
    prompts = _prompts(trained, 60)
    secret, open_ = prompts[:40], prompts[40:]
    rng = random.Random(11)
    kinds = [{}, {"best_of_n": 3}, {"ensemble": {"kind": "median", "n": 3}}, {"majority_vote": 2}, {"stream": True}]

    async def one(client: httpx.AsyncClient, i: int, prompt: str, secure: bool) -> tuple[bool, httpx.Response]:
        extra = dict(kinds[i % len(kinds)])
        stream = bool(extra.pop("stream", False))
        opts: dict[str, Any] = {"user": f"u{rng.randrange(8)}", **extra}
        if secure:
            # the tenant's policy, or a request of an open tenant that asks for local_only itself
            opts.update({"tenant": "secure"} if i % 3 else {"tenant": "open", "data_policy": "local_only"})
        else:
            opts.update({"tenant": "open", "data_policy": "prefer_local", "confidence": 0.0})
        body = {**_body(prompt, **opts), "stream": stream}
        return secure, await client.post("/v1/chat/completions", json=body)

    async def run() -> list[tuple[bool, httpx.Response]]:
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def limited(i: int, p: str, secure: bool) -> tuple[bool, httpx.Response]:
                async with sem:
                    return await one(client, i, p, secure)

            jobs = [limited(i, p, True) for i, p in enumerate(secret * 3)]
            jobs += [limited(i, p, False) for i, p in enumerate(open_ * 3)]
            return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    leaked = set(secret) & set(spy.prompts)
    assert not leaked, f"{len(leaked)} local_only prompts reached the API server"
    assert spy.prompts, "the spy saw no traffic at all: the test would pass vacuously"

    secure_ok = secure_refused = fallbacks = 0
    for secure, r in results:
        if secure:
            if r.status_code == 200:
                secure_ok += 1
                if r.headers["content-type"].startswith("text/event-stream"):
                    events = [json.loads(line[6:]) for line in r.text.splitlines()
                              if line.startswith("data: {")]
                    info = events[-1]["llmroute"]
                else:
                    info = r.json()["llmroute"]
                assert r.headers["X-LLMRoute-Model"] in LOCALS
                assert {a["model"] for a in info["attempts"]} <= set(LOCALS)
                assert info["data_policy"] == "local_only" and "fallback" not in info
            else:
                assert r.status_code == 503, r.text
                err = r.json()["error"]
                assert err["type"] in ("local_models_failed", "no_available_model") and "local_only" in err["message"]
                secure_refused += 1
        else:
            assert r.status_code == 200, r.text
            if r.headers.get("X-LLMRoute-Fallback") == "api":
                fallbacks += 1
                if not r.headers["content-type"].startswith("text/event-stream"):
                    fb = r.json()["llmroute"]["fallback"]
                    assert fb["to"] not in LOCALS and {f["model"] for f in fb["from"]} <= set(LOCALS)
    assert secure_ok > 60, (secure_ok, secure_refused)

    with httpx.Client(base_url=url) as c:
        metrics = c.get("/metrics").text
        models = c.get("/models").json()
    assert 'llmroute_data_policy_decisions_total{policy="local_only"}' in metrics
    assert not re.search(r"^llmroute_data_policy_blocked_total\{", metrics, re.M)  # the last gate never had to fire
    by_name = {m["name"]: m for m in models["models"]}
    assert all(by_name[m]["catalog"]["local"] for m in LOCALS)
    assert not by_name["gpt-4-1106-preview"]["catalog"]["local"]
    assert {"available", "breaker"} <= set(by_name[LOCALS[0]]["health"])
    assert models["data_policy_by_tenant"] == {"secure": "local_only"}

    live[-1].stop()  # flush the decision log
    rows = sqlite3.connect(db).execute("SELECT tenant, constraints, reason, chosen_model FROM decisions").fetchall()
    unrouted = sum(1 for _, r in results if r.status_code == 503 and r.json()["error"]["type"] == "no_available_model")
    assert len(rows) == len(results) - unrouted  # every decision is logged; a request refused by routing has none
    for _tenant, cons, reason, chosen in rows:
        policy = json.loads(cons)["data_policy"]
        assert policy in ("local_only", "prefer_local") and reason
        if policy == "local_only":
            assert chosen in LOCALS and "data_policy local_only" in reason


def test_local_only_without_a_local_model_is_refused_with_422(
    trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    url, spy, _ = start_hybrid(trained, router, live, tmp_path, {}, catalog=None, decision_log_url="off")
    prompt = _prompts(trained, 1)[0]
    with httpx.Client(base_url=url) as c:
        r = c.post("/v1/chat/completions", json=_body(prompt, tenant="secure"))
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["type"] == "no_eligible_model" and "data_policy local_only" in err["message"]
        assert set(err["reasons"]) == set(router.models)
        r = c.post("/route", json={"prompt": prompt, "data_policy": "local_only"})
        assert r.status_code == 422
        r = c.post("/route", json={"prompt": prompt, "data_policy": "everywhere"})
        assert r.status_code == 422 and "data_policy" in r.text
    assert spy.prompts == []


def test_local_outage_fails_over_and_opens_the_breaker(
    trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    """The local models hard down: normal requests fail over to an API model and say so; after
    ``breaker_failure_threshold`` failures the local models are unavailable, so requests go straight to the
    API without waiting for a timeout; local_only requests are refused with 503 naming the policy."""
    url, spy, _ = start_hybrid(
        trained, router, live, tmp_path, {"timeout_rate": 1.0},
        breaker_failure_threshold=2, breaker_cooldown_s=60.0, decision_log_url="off", cascade_confidence=0.0,
    )
    prompts = _prompts(trained, 8)
    with httpx.Client(base_url=url, timeout=30) as c:
        first = c.post("/v1/chat/completions", json=_body(prompts[0], data_policy="prefer_local", confidence=0.0))
        assert first.status_code == 200, first.text
        info = first.json()["llmroute"]
        assert first.headers["X-LLMRoute-Fallback"] == "api"
        assert info["fallback"]["to"] not in LOCALS
        assert info["fallback"]["from"][0] == {"model": info["attempts"][0]["model"], "error_kind": "timeout"}
        for p in prompts[1:4]:
            c.post("/v1/chat/completions", json=_body(p, data_policy="prefer_local", confidence=0.0))
        models = {m["name"]: m["health"] for m in c.get("/models").json()["models"]}
        assert all(models[m]["breaker"]["state"] == "open" for m in LOCALS), models
        assert all("circuit breaker open" in models[m]["unavailable_because"] for m in LOCALS)
        metrics = c.get("/metrics").text
        for m in LOCALS:
            assert f'llmroute_circuit_breaker_state{{model="{m}"}} 2.0' in metrics
            assert f'llmroute_model_available{{model="{m}"}} 0.0' in metrics
        # breaker open: the local models are not even tried
        r = c.post("/v1/chat/completions", json=_body(prompts[5], data_policy="prefer_local", confidence=0.0))
        assert r.status_code == 200 and len(r.json()["llmroute"]["attempts"]) == 1
        assert r.json()["llmroute"]["attempts"][0]["model"] not in LOCALS
        assert "prefer_local: no local model is eligible" in r.json()["llmroute"]["decision"]["reason"]
        refused = c.post("/v1/chat/completions", json=_body(prompts[6], tenant="secure"))
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        err = refused.json()["error"]
        assert err["type"] == "no_available_model"
        assert all("circuit breaker open" in err["reasons"][m] for m in LOCALS)
        assert all("data_policy local_only" in why for m, why in err["reasons"].items() if m not in LOCALS)
        assert c.get("/ready").json()["status"] == "ready"  # API models are healthy
    assert prompts[6] not in spy.prompts


@pytest.mark.parametrize("kind", ["mean", "median"])
def test_numeric_ensemble_over_http(
    kind: str, trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    logs = trained.logs.copy()
    prompt = _prompts(trained, 1)[0]
    numbers = {m: str(i + 1) for i, m in enumerate(router.models)}
    rows = logs["prompt"] == prompt
    logs.loc[rows, "response"] = logs.loc[rows, "model"].map(numbers)
    rep = LiveServer(create_replay_app(logs)).start()
    live.append(rep)
    settings = ServeSettings(model=str(trained.folder), default_base_url=f"{rep.url}/v1", decision_log_url="off")
    svc = LiveServer(create_app(settings, router, core=trained.core)).start()
    live.append(svc)
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=_body(prompt, ensemble={"kind": kind, "n": 4}))
        assert r.status_code == 200, r.text
        info = r.json()["llmroute"]
        got = sorted(float(numbers[a["model"]]) for a in info["attempts"])
        want = sum(got) / len(got) if kind == "mean" else (got[1] + got[2]) / 2
        assert float(r.json()["choices"][0]["message"]["content"]) == pytest.approx(want)
        assert info["mode"] == kind and info["ensemble"]["result"] == pytest.approx(want)
        assert sorted(info["ensemble"]["numbers"].values()) == got and info["ensemble"]["non_numeric"] == []
        bad = c.post("/v1/chat/completions", json=_body(prompt, ensemble={"kind": kind, "n": 2}, best_of_n=2))
        assert bad.status_code == 422 and "at most one of" in bad.text


def test_arm_routers_get_the_deployment_catalog(
    trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    """An A/B arm served by another router (a copy of the served one at another path) sees the same
    local models as the served router: local_only requests assigned to it are served locally, not refused."""
    import shutil

    copy = tmp_path / "copy-router"
    shutil.copytree(trained.folder, copy)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "arms", "unit": "user",
        "arms": [{"name": "served", "control": True, "weight": 1, "router": str(trained.folder)},
                 {"name": "copy", "weight": 1, "router": str(copy)}],
    }))
    url, spy, _ = start_hybrid(trained, router, live, tmp_path, {}, experiment=str(exp), decision_log_url="off")
    prompt = _prompts(trained, 1)[0]
    arms = set()
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(12):
            r = c.post("/v1/chat/completions", json=_body(prompt, tenant="secure", user=f"user-{i}"))
            assert r.status_code == 200, r.text
            arms.add(r.json()["llmroute"]["decision"]["arm"])
            assert r.json()["model"] in LOCALS
    assert arms == {"served", "copy"}
    assert prompt not in spy.prompts


def test_rate_limit_from_the_catalog_moves_traffic(
    trained: Trained, router: Router, live: list[LiveServer], tmp_path: Path
) -> None:
    """A local model limited to 2 requests a minute takes two, then is unavailable (the decision says why)
    and the next request goes to the other local model."""
    first_local = min(LOCALS, key=lambda m: router.specs[m].input_price_per_1m or 0.0)  # type: ignore[union-attr]
    url, _, _ = start_hybrid(trained, router, live, tmp_path, {}, {first_local: {"rate_limit_rpm": 2}},
                             decision_log_url="off", cascade_confidence=0.0)
    prompt = _prompts(trained, 1)[0]
    with httpx.Client(base_url=url, timeout=30) as c:
        served = [c.post("/v1/chat/completions", json=_body(prompt, tenant="secure", confidence=0.0)).json()
                  for _ in range(3)]
        health = {m["name"]: m["health"] for m in c.get("/models").json()["models"]}
    chosen = [d["llmroute"]["decision"]["model"] for d in served]
    assert chosen[2] != chosen[0] and chosen[2] in LOCALS, chosen
    assert chosen[:2] == [first_local, first_local]
    why = next(x["excluded_by"] for x in served[2]["llmroute"]["decision"]["candidates"] if x["model"] == first_local)
    assert why.startswith("unavailable: rate limit of 2 requests/min reached")
    assert health[first_local]["rate_limit"]["requests_per_min"] == 2 and not health[first_local]["available"]
