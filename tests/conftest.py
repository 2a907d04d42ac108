"""Fixtures every test folder shares: an isolated LLMROUTE_HOME and one OpenMP thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router.helpers import one_openmp_thread


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
