from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router.helpers import Trained, one_openmp_thread, trained_router


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    with one_openmp_thread():
        yield


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "llmroute-home"
    monkeypatch.setenv("LLMROUTE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The session's small trained router (shared with tests/router: trained once)."""
    return trained_router(tmp_path_factory.mktemp("small-router"))
