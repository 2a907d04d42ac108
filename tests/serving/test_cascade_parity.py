"""Offline cascade replay == the live cascade: held-out prompts sent through the real service and the
replay server make exactly the attempts, pay exactly the costs and deliver exactly the answers that
the offline evaluation's replay says; plus the offline evaluation's cascade rows and skip reasons."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from llmroute.config import Settings
from llmroute.data.answers import answer_matrix, value_matrix
from llmroute.data.importers import read_logs, write_logs
from llmroute.data.wide import to_wide
from llmroute.experiments.cascade_eval import CascadeInputs, ScoreBook, replay
from llmroute.experiments.report import run_evaluation
from llmroute.router.answer_scorer import ResponseScorer, scorer_in
from llmroute.router.cascade_policy import OperatingPoint
from llmroute.router.decision import QualityTarget
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from tests.serving.servers import LiveServer

pytestmark = pytest.mark.slow  # trains a router with its answer scorer and operating points

REPO = Path(__file__).resolve().parents[2]
N_TRAIN = 150
N_TEST = 20


@dataclass(frozen=True)
class WithScorer:
    folder: Path
    router: Router
    scorer: ResponseScorer
    train_path: Path
    test_path: Path
    test_logs: pd.DataFrame
    core: Settings


@pytest.fixture(scope="module")
def with_scorer(tmp_path_factory: pytest.TempPathFactory) -> WithScorer:
    """A router trained (with its answer scorer and cascade operating points) on 150 RouterBench
    training prompts; 20 held-out test prompts."""
    import lightgbm  # noqa: F401  - load its OpenMP runtime so the thread limit reaches it
    from threadpoolctl import threadpool_limits

    from llmroute.training.train import TrainConfig, train_router

    tmp = tmp_path_factory.mktemp("cascade-parity")
    core = Settings(home=tmp / "home")
    train = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    ids = sorted(train["prompt_id"].unique())[:N_TRAIN]
    write_logs(train[train["prompt_id"].isin(ids)].reset_index(drop=True), tmp / "train.parquet")
    test = read_logs(REPO / "data" / "routerbench" / "test.parquet")
    tids = sorted(test["prompt_id"].unique())[:N_TEST]
    test = test[test["prompt_id"].isin(tids)].reset_index(drop=True)
    write_logs(test, tmp / "test.parquet")
    with threadpool_limits(limits=1, user_api="openmp"):
        router, folder = train_router(tmp / "train.parquet", core, TrainConfig(embedder="minilm"), out_dir=tmp / "router")
    scorer = scorer_in(folder, router.embedder)
    assert scorer is not None and scorer.operating_points is not None
    return WithScorer(folder, router, scorer, tmp / "train.parquet", tmp / "test.parquet", test, core)


def _inputs(ws: WithScorer) -> CascadeInputs:
    wide, _ = to_wide(ws.test_logs).restrict(ws.router.models).complete()
    prepared = ws.router.prepare(list(wide.prompts), independent_rows=True)
    probs, exp_cost = ws.router.predict(prepared, independent_rows=True)
    return CascadeInputs(
        wide.models, wide.prompts, wide.tasks, answer_matrix(ws.test_logs, wide.prompt_ids, wide.models),
        wide.quality, wide.cost, value_matrix(ws.test_logs, wide.prompt_ids, wide.models, "latency_ms"),
        probs, exp_cost, 0.5,
    )


def _offline(ws: WithScorer, inp: CascadeInputs, point: OperatingPoint) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """The offline replay at ``point``: per prompt the attempted models, the delivered model index and
    the total cost."""
    made: set[tuple[int, str, tuple[str, ...]]] = set()
    r = replay(inp, [point], ScoreBook(ws.scorer, inp, None), record=made)
    paths = [[m for _, m, prev in sorted((c for c in made if c[0] == i), key=lambda c: len(c[2]))]
             for i in range(len(inp.prompts))]
    return paths, r.delivered[:, 0], r.cost[:, 0]


def _serve(ws: WithScorer, live: list[LiveServer], **settings: Any) -> httpx.Client:
    rep = LiveServer(create_replay_app(ws.test_logs, report_cost=True)).start()
    live.append(rep)
    serve = ServeSettings(model=str(ws.folder), default_base_url=f"{rep.url}/v1", provider_timeout_s=10.0,
                          provider_retries=0, **settings)
    svc = LiveServer(create_app(serve, ws.router, core=ws.core, scorer=ws.scorer)).start()
    live.append(svc)
    return httpx.Client(base_url=svc.url, timeout=60)


def _check_parity(client: httpx.Client, model: str, inp: CascadeInputs, paths: list[list[str]],
                  delivered: np.ndarray, cost: np.ndarray) -> list[dict[str, Any]]:
    infos = []
    for i, prompt in enumerate(inp.prompts):
        r = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": prompt}]})
        assert r.status_code == 200, r.text
        info = r.json()["llmroute"]
        assert [a["model"] for a in info["attempts"]] == paths[i], f"prompt {i}"
        assert r.json()["model"] == inp.models[delivered[i]]
        assert r.json()["choices"][0]["message"]["content"] == inp.answers[i, delivered[i]]
        assert info["total_cost_usd"] == pytest.approx(cost[i], rel=1e-12, abs=1e-15)
        infos.append(info)
    return infos


def test_live_cascade_equals_offline_replay_at_an_operating_point(with_scorer: WithScorer, live: list[LiveServer]) -> None:
    """The operating point a target maps to: the one on the frontier that escalates most on the sample
    (asked for by its validation quality as an absolute target)."""
    ws = with_scorer
    inp = _inputs(ws)
    assert len(inp.prompts) >= 15 and ws.scorer.operating_points is not None
    replays = [(p, *_offline(ws, inp, p)) for p in ws.scorer.operating_points.cascade]
    point, paths, delivered, cost = max(replays, key=lambda r: sum(len(x) for x in r[1]))
    target = repr(point.validation_quality)
    assert ws.scorer.operating_points.point_for(QualityTarget.parse(target))[0] == point
    with _serve(ws, live) as client:
        infos = _check_parity(client, f"llmroute:{target}", inp, paths, delivered, cost)
    assert all(i["operating_point"]["thresholds"] == list(point.thresholds) for i in infos)
    assert all(i["decision"]["knob"] == point.knob for i in infos)


def test_live_cascade_equals_offline_replay_when_every_answer_escalates(
    with_scorer: WithScorer, live: list[LiveServer]
) -> None:
    """Without operating points and a threshold of 1: every request climbs to max_attempts, each answer
    scored with the earlier ones; the same walk offline gives the same attempts, costs and answers."""
    ws = with_scorer
    inp = _inputs(ws)
    knob, _ = ws.router.knob_tables[ws.router.default_rule].knob_for(QualityTarget(0.8))
    point = OperatingPoint(ws.router.default_rule, knob, 2.0, 1.0, (1.0,), 3, float("nan"), float("nan"))
    paths, delivered, cost = _offline(ws, inp, point)
    assert sum(len(p) > 1 for p in paths) >= 3, paths
    with _serve(ws, live, cascade_operating_points=False, cascade_confidence=1.0, scorer_weight=2.0) as client:
        infos = _check_parity(client, "llmroute:80%", inp, paths, delivered, cost)
    assert all("operating_point" not in i for i in infos)
    assert any(a["scorer_probability"] is not None for i in infos for a in i["attempts"])


def test_evaluation_reports_cascade_rows(with_scorer: WithScorer, tmp_path: Path) -> None:
    ws = with_scorer
    report = run_evaluation(ws.router, ws.test_path, tmp_path / "rep", ws.core.cache_dir / "embeddings.sqlite",
                            ws.train_path, n_boot=20, scorer=ws.scorer)
    routers = report["routers"]
    for name in ("cascade", "fixed_chain", "cascade_perfect_scorer"):
        assert name in routers and "aiq_minus_learned" in routers[name], name
    c = report["cascade"]
    assert {t["target"] for t in c["target_attainment"]} == {"90% of the best model", "95% of the best model",
                                                            "100% of the best model"}
    row = c["target_attainment"][1]
    assert 0 <= row["escalation_rate"] <= 1 and row["mean_attempts"] >= 1 and row["latency_ms"] is None
    assert c["scorer_auc"]["alone"]["all"]["answers"] == len(ws.router.models) * report["data"]["prompts_scored"]
    # the perfect scorer is the ceiling: never below the scorer's cascade at any cost it reaches
    assert routers["cascade_perfect_scorer"]["max_quality"] >= routers["cascade"]["max_quality"] - 1e-12
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Cascade" in md and "| cascade |" in md
    json.loads((tmp_path / "rep" / "report.json").read_text())


def test_evaluation_skips_what_it_cannot_compute(with_scorer: WithScorer, tmp_path: Path) -> None:
    """Logs without responses: the cascade rows are skipped with a reason. Rules naming models the logs
    do not have: those baselines are skipped with a reason. The rest runs."""
    ws = with_scorer
    write_logs(ws.test_logs.drop(columns=["response"]), tmp_path / "no_responses.parquet")
    rules = tmp_path / "rules.yaml"
    seed = (REPO / "src" / "llmroute" / "rules" / "seed_rules.yaml").read_text()
    for m in ws.router.models:
        seed = seed.replace(m, "some-model-we-never-logged")
    rules.write_text(seed)
    report = run_evaluation(ws.router, tmp_path / "no_responses.parquet", tmp_path / "rep",
                            ws.core.cache_dir / "embeddings.sqlite", ws.train_path, rules_path=rules, n_boot=20,
                            scorer=ws.scorer)
    skipped = report["skipped"]
    assert "lack a logged response" in skipped["cascade"]
    assert report["cascade"] is None and "cascade" not in report["routers"]
    assert "learned" in report["routers"] and "knn" in report["routers"]
    assert any(k.startswith("seed_") for k in skipped), skipped
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Skipped" in md and "lack a logged response" in md
    no_scorer = run_evaluation(ws.router, ws.test_path, tmp_path / "rep2", ws.core.cache_dir / "embeddings.sqlite",
                               ws.train_path, n_boot=20, scorer=None)
    assert "no answer scorer" in no_scorer["skipped"]["cascade"]
