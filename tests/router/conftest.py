from __future__ import annotations

import dataclasses

import pytest

from llmroute.router.router import Router
from tests.router.helpers import MemoEmbedder, Trained, minilm, trained_router
from tests.tiers import slow_fixture


@pytest.fixture(scope="session")
@slow_fixture("loads the MiniLM transformer")
def minilm_embedder() -> object:
    return minilm()


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer")
def small(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A router trained once per session on 250 RouterBench prompts with the bundled MiniLM."""
    return trained_router(tmp_path_factory.mktemp("small-router"))


@pytest.fixture(scope="session")
def memo_embedder(small: Trained) -> MemoEmbedder:
    """The router's MiniLM behind a per-text memo, so routing the same prompts again is cheap."""
    return MemoEmbedder(small.embedder)


@pytest.fixture
def router(small: Trained, memo_embedder: MemoEmbedder) -> Router:
    """The trained router with the memoised embedder (a new router: routers are immutable; a test
    reconfigures it by making others from it, e.g. ``dataclasses.replace(router, specs=...)``)."""
    return dataclasses.replace(small.router, embedder=memo_embedder)
