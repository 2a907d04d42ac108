"""Fixtures every test folder shares: an isolated LLMROUTE_HOME and one OpenMP thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router.helpers import one_openmp_thread
from tests.tiers import mark_slow_fixture_users, slow_fixture


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_slow_fixture_users(items)  # the test tiers: see tests/tiers.py


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    with one_openmp_thread():
        yield


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch ~/.llmroute: every test gets its own LLMROUTE_HOME."""
    home = tmp_path / "llmroute-home"
    monkeypatch.setenv("LLMROUTE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
@slow_fixture("distils the static MiniLM")
def static_embedders_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedders folder holding the distilled static MiniLM, built once per session (10-100 s, more on a
    busy machine); tests copy it into their own LLMROUTE_HOME instead of distilling again."""
    from llmroute.router.embedder import BUNDLED_STATIC, load_embedder

    embedders = tmp_path_factory.mktemp("embedders")
    load_embedder(BUNDLED_STATIC, embedders)
    return embedders
