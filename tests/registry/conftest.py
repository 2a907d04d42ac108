"""Fixtures for the MLflow tracking and registry tests.

Two tiny routers are trained once per session with the bundled MiniLM transformer: a *good* one on
200 RouterBench prompts, and a deliberately *worse* one on 80 prompts whose outcomes are inverted
(quality -> 1 - quality), so it prefers exactly the models that fail. Tests get private copies of the
router folders (logging rewrites router.json) and each test that changes registry state uses its own
SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmroute.config import Settings
from tests.registry.helpers import Trained
from tests.tiers import slow_fixture

REPO = Path(__file__).resolve().parents[2]
ROUTERBENCH = REPO / "data" / "routerbench"


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """LightGBM asks for every core; on a busy 2-core machine its OpenMP threads spin against each
    other and a tiny fit takes ~10x longer. One thread keeps the suite's run time predictable."""
    import lightgbm  # noqa: F401  - load its OpenMP runtime so the limit reaches it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch, reg_home: Path) -> None:
    """Never use a tracking server or home from the developer's environment."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LLMROUTE_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMROUTE_HOME", str(reg_home))


@pytest.fixture(scope="session")
def reg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared LLMROUTE_HOME (embedding cache, embedders) for the session."""
    return tmp_path_factory.mktemp("llmroute-home")


def _slice(src: Path, dst: Path, n_prompts: int, invert: bool = False) -> Path:
    from llmroute.data.importers import read_logs, write_logs

    df = read_logs(src)
    ids = df["prompt_id"].drop_duplicates().iloc[:n_prompts]
    part = df[df["prompt_id"].isin(ids)].copy()
    if invert:
        part["quality"] = 1.0 - part["quality"]
    write_logs(part, dst)
    return dst


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def train_logs(data_dir: Path) -> Path:
    return _slice(ROUTERBENCH / "train.parquet", data_dir / "train200.parquet", 200)


@pytest.fixture(scope="session")
def test_logs(data_dir: Path) -> Path:
    return _slice(ROUTERBENCH / "test.parquet", data_dir / "test300.parquet", 300)


def _train(logs: Path, home: Path, out: Path) -> Trained:
    from llmroute.training.train import TrainConfig, train_router

    router, folder = train_router(logs, Settings(home=home), TrainConfig(embedder="minilm", with_scorer=False), out_dir=out)
    return Trained(router, folder, logs)


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer")
def good(train_logs: Path, reg_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(train_logs, reg_home, tmp_path_factory.mktemp("good") / "router")


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer")
def bad(data_dir: Path, reg_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    logs = _slice(ROUTERBENCH / "train.parquet", data_dir / "inverted80.parquet", 80, invert=True)
    return _train(logs, reg_home, tmp_path_factory.mktemp("bad") / "router")
