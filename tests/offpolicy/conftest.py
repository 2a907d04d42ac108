"""A small production decision log made the way the service makes it: the session's trained router
routes RouterBench test prompts, exploration (share 0.3, seeded) may replace its pick, the served
model's recorded outcome and quality become the outcome and the feedback. Some decisions are left
without outcome, without feedback, or redacted, to check the accounting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionRecord,
    FeedbackRecord,
    OutcomeRecord,
)
from tests.router.helpers import ROUTERBENCH, Trained, trained_router
from tests.tiers import slow_fixture

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SHARE = 0.3
N_PROMPTS = 160
NO_OUTCOME = range(150, 154)  # /route decisions: nothing was called
NO_FEEDBACK = range(154, 157)
REDACTED = range(157, 160)


@dataclass
class ProductionLog:
    trained: Trained
    url: str
    prompts: list[str]
    quality: dict[tuple[str, str], float]
    cost: dict[tuple[str, str], float]
    records: list[DecisionRecord]
    cutoff: datetime  # decisions 0..99 before, 100.. after
    cache: Path  # embedding cache shared by the tests (routing the log embeds each prompt once)


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer and logs its decisions")
def production_log(tmp_path_factory: pytest.TempPathFactory) -> ProductionLog:
    from llmroute.serving.exploration import Explorer, explore

    trained = trained_router(tmp_path_factory.mktemp("offpolicy-router"))
    router = trained.router
    df = pd.read_parquet(ROUTERBENCH / "test.parquet")
    df = df[df["model"].isin(router.models)]
    complete = df.groupby("prompt_id")["model"].nunique() == len(router.models)
    ids = list(complete[complete].index[:N_PROMPTS])
    first = df[df["prompt_id"].isin(ids)].drop_duplicates("prompt_id").set_index("prompt_id").loc[ids]
    prompts = [str(p) for p in first["prompt"]]
    quality = {(str(p), str(m)): float(q) for p, m, q in zip(df["prompt"], df["model"], df["quality"])}
    cost = {(str(p), str(m)): float(c) for p, m, c in zip(df["prompt"], df["model"], df["cost_usd"])}
    explorer = Explorer(seed=7)
    records: list = []
    decisions: list[DecisionRecord] = []
    for i, prompt in enumerate(prompts):
        decision, propensity = explore(router.route(prompt), SHARE, explorer)
        at = T0 + timedelta(minutes=i)
        rec = DecisionRecord.from_decision(
            decision, prompt=prompt, decision_id=f"dec{i:04d}", propensity=propensity, created_at=at,
            source="chat", redact=i in REDACTED,
        )
        decisions.append(rec)
        records.append(rec)
        if i in NO_OUTCOME:
            continue
        served = decision.model
        records.append(OutcomeRecord(rec.decision_id, served, True, created_at=at + timedelta(seconds=1),
                                     input_tokens=100, output_tokens=50, cost_usd=cost[(prompt, served)],
                                     attempts=({"model": served, "ok": True},)))
        if i in NO_FEEDBACK:
            continue
        records.append(FeedbackRecord(rec.decision_id, quality[(prompt, served)], created_at=at + timedelta(seconds=5)))
    db = tmp_path_factory.mktemp("production") / "decisions.sqlite"
    url = f"sqlite:///{db}"
    with DecisionLogStore(url) as store:
        store.write_many(records)
    return ProductionLog(trained, url, prompts, quality, cost, decisions, T0 + timedelta(minutes=100),
                         db.parent / "embeddings.sqlite")


@pytest.fixture
def tracked_settings(tmp_path: Path, production_log: ProductionLog, monkeypatch: pytest.MonkeyPatch):
    """Settings with a private MLflow store, and training that reuses the session's MiniLM."""
    from llmroute.config import Settings
    from llmroute.training import train as train_mod

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LLMROUTE_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    embedder = production_log.trained.embedder
    monkeypatch.setattr(train_mod, "load_embedder", lambda spec, _dir: embedder)
    return Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", embedder="minilm")
