"""The embedder registry: a name -> factory seam that load_embedder (and so router loading) resolves first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pytest

from llmroute.router.embedder import (
    BUNDLED,
    BUNDLED_STATIC,
    Embedder,
    embedder_names,
    load_embedder,
    register_embedder,
    unregister_embedder,
)
from tests.router.helpers import HashEmbedder


@pytest.fixture
def hashed() -> Iterator[list[tuple[str, Path]]]:
    """Registers 'test-hash' (a factory recording its calls); unregistered afterwards."""
    calls: list[tuple[str, Path]] = []

    def factory(spec: str, embedders_dir: Path) -> Embedder:
        calls.append((spec, embedders_dir))
        return HashEmbedder(dim=8, spec=spec)

    register_embedder("test-hash", factory)
    try:
        yield calls
    finally:
        unregister_embedder("test-hash")


def test_a_registered_name_is_built_by_its_factory(hashed: list[tuple[str, Path]], tmp_path: Path) -> None:
    assert embedder_names()[:2] == (BUNDLED, BUNDLED_STATIC) and "test-hash" in embedder_names()
    e = load_embedder("test-hash", tmp_path)
    assert hashed == [("test-hash", tmp_path)]
    assert e.spec == "test-hash" and e.dim == 8 and e.independent_rows
    v = e.encode(["a", "b"])
    assert v.shape == (2, 8) and np.allclose(np.linalg.norm(v, axis=1), 1.0)


def test_a_registered_name_wins_over_a_folder_of_that_name(
    hashed: list[tuple[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test-hash").mkdir()  # not a model folder: loading it as one would fail
    assert load_embedder("test-hash", tmp_path).spec == "test-hash" and len(hashed) == 1


def test_the_registry_refuses_clashes_and_empty_names(hashed: list[tuple[str, Path]]) -> None:
    with pytest.raises(ValueError, match="'test-hash' is already registered"):
        register_embedder("test-hash", lambda spec, d: HashEmbedder())
    with pytest.raises(ValueError, match="non-empty name"):
        register_embedder("", lambda spec, d: HashEmbedder())
    with pytest.raises(ValueError, match="cannot be unregistered"):
        unregister_embedder(BUNDLED_STATIC)


def test_an_unknown_spec_names_the_registered_embedders(tmp_path: Path) -> None:
    want = r"'no-such-embedder-xyz' is neither a registered embedder \('minilm', 'minilm-static'\)"
    with pytest.raises(FileNotFoundError, match=want):
        load_embedder("no-such-embedder-xyz", tmp_path)


def test_the_interface_declares_what_callers_use() -> None:
    assert set(get_type_hints(Embedder)) == {"spec", "fingerprint", "dim", "independent_rows"}
