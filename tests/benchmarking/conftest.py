"""Live servers for the benchmarking tests: the deterministic fake LLM and the replay server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from llmroute.data.catalog import Catalog, load_catalog
from llmroute.serving.replay import create_replay_app
from tests.benchmarking.fake_llm import create_fake_llm
from tests.serving.servers import LiveServer

FIXTURES = Path(__file__).parent / "fixtures"
ROUTERBENCH_TEST = Path(__file__).parents[2] / "data" / "routerbench" / "test.parquet"
REPLAY_MODELS = ("gpt-3.5-turbo-1106", "gpt-4-1106-preview")


@pytest.fixture(scope="session")
def fake_server() -> Iterator[LiveServer]:
    server = LiveServer(create_fake_llm()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(fake_server: LiveServer) -> LiveServer:
    """The fake LLM with its request counts reset."""
    fake_server.server.config.app.state.counts.clear()
    return fake_server


def counts(server: LiveServer) -> Counter[tuple[str, str]]:
    return server.server.config.app.state.counts  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def test_catalog() -> Catalog:
    return load_catalog(FIXTURES / "catalog.yaml")


@pytest.fixture(scope="session")
def replay_slice() -> pd.DataFrame:
    df = pd.read_parquet(ROUTERBENCH_TEST)
    arc = df[(df["task"] == "arc-challenge") & df["model"].isin(REPLAY_MODELS)]
    ids = arc.groupby("prompt_id").filter(lambda g: len(g) == len(REPLAY_MODELS))["prompt_id"].unique()[:8]
    return arc[arc["prompt_id"].isin(ids)].reset_index(drop=True)


@pytest.fixture(scope="session")
def replay_server(replay_slice: pd.DataFrame) -> Iterator[LiveServer]:
    server = LiveServer(create_replay_app(replay_slice)).start()
    try:
        yield server
    finally:
        server.stop()
