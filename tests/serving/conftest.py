"""Fixtures for the serving tests: one small trained router per session, and real local servers."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from llmroute.artifacts.manifest import write_manifest
from llmroute.config import Settings
from llmroute.router.router import Router
from tests.serving.servers import LiveServer
from tests.tiers import slow_fixture

REPO = Path(__file__).resolve().parents[2]
N_PROMPTS = 200


@dataclass(frozen=True)
class Trained:
    folder: Path
    router: Router
    logs: pd.DataFrame
    core: Settings


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A router trained once on the first 200 RouterBench prompts with the bundled MiniLM."""
    import lightgbm  # noqa: F401  - load its OpenMP runtime so the thread limit reaches it
    from threadpoolctl import threadpool_limits

    from llmroute.data.importers import read_logs, write_logs
    from llmroute.training.train import TrainConfig, train_router

    tmp = tmp_path_factory.mktemp("serving-router")
    core = Settings(home=tmp / "home")
    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    ids = sorted(df["prompt_id"].unique())[:N_PROMPTS]
    logs = df[df["prompt_id"].isin(ids)].reset_index(drop=True)
    write_logs(logs, tmp / "logs.parquet")
    with threadpool_limits(limits=1, user_api="openmp"):
        router, folder = train_router(
            tmp / "logs.parquet", core, TrainConfig(embedder="minilm", with_scorer=False), out_dir=tmp / "router"
        )
    return Trained(folder, router, logs, core)


@pytest.fixture
def good(trained: Trained, tmp_path: Path) -> Path:
    """A copy of the trained router folder with its manifest (as ``llmroute train`` writes it now)."""
    folder = tmp_path / "good"
    shutil.copytree(trained.folder, folder)
    write_manifest(folder)
    return folder


@pytest.fixture
def router(trained: Trained) -> Router:
    """A copy of the trained router (its own object: its own micro-batcher; routers are immutable,
    make others with ``router.with_version(...)``)."""
    return dataclasses.replace(trained.router)


@pytest.fixture
@slow_fixture("starts the service on a real port")
def live() -> Iterator[list[LiveServer]]:
    """Servers started by a test; all are stopped in teardown."""
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def scorer_folder(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A response scorer trained on 40 of the session router's prompts, with its embedder."""
    from threadpoolctl import threadpool_limits

    from llmroute.training.scorer import train_scorer

    ids = sorted(trained.logs["prompt_id"].unique())[:40]
    folder = tmp_path_factory.mktemp("serving-scorer") / "scorer"
    with threadpool_limits(limits=1, user_api="openmp"):
        train_scorer(trained.logs[trained.logs["prompt_id"].isin(ids)], trained.router.embedder, folder)
    return folder
