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
    home = tmp_path / "llmroute-home"
    monkeypatch.setenv("LLMROUTE_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def _library_logging_on_a_lasting_stream() -> None:
    """Let transformers set up its log handler now, on a stream that outlives the tests.

    Otherwise it binds to the first CliRunner invocation's (later closed) stderr, and every later
    log record prints a "--- Logging error ---" traceback into the next invocation's output.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.get_verbosity()
