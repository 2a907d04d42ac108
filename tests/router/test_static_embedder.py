"""The static (model2vec) distillation of the bundled MiniLM: built once, then loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmroute.router.embedder import BUNDLED_STATIC, STATIC_PCA_DIMS, load_embedder

TEXTS = ["Write a python function to reverse a string.", "Which gas do plants absorb?", "x" * 5000]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """Distils the static embedder (10-100 s) once for this module."""
    embedders = tmp_path_factory.mktemp("embedders")
    return load_embedder(BUNDLED_STATIC, embedders), embedders


@pytest.mark.slow
def test_static_embedder_builds_once_and_encodes_unit_vectors(
    built: tuple[object, Path], capsys: pytest.CaptureFixture[str], minilm_embedder: object
) -> None:
    first, embedders = built
    target = embedders / BUNDLED_STATIC
    assert (target / "modules.json").exists()
    assert not (embedders / f"{BUNDLED_STATIC}.tmp" / "st").exists()  # the build left no half-written copy
    assert first.spec == BUNDLED_STATIC and first.dim == STATIC_PCA_DIMS  # type: ignore[attr-defined]
    v = first.encode(TEXTS)  # type: ignore[attr-defined]
    assert v.shape == (3, STATIC_PCA_DIMS) and v.dtype == np.float32 and np.isfinite(v).all()
    # unit length up to the float16 precision the distilled weights are stored in
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert first.encode(TEXTS[:1])[0] @ v[1] < 0.99  # type: ignore[attr-defined]  # different texts differ

    mtime = (target / "modules.json").stat().st_mtime_ns
    capsys.readouterr()
    second = load_embedder(BUNDLED_STATIC, embedders)
    assert "building" not in capsys.readouterr().out  # loaded, not rebuilt
    assert (target / "modules.json").stat().st_mtime_ns == mtime
    assert second.fingerprint == first.fingerprint  # type: ignore[attr-defined]
    assert second.fingerprint != minilm_embedder.fingerprint  # type: ignore[attr-defined]
    np.testing.assert_array_equal(second.encode(TEXTS), v)


@pytest.mark.slow
def test_static_embedder_gives_finite_vectors_for_empty_text(built: tuple[object, Path]) -> None:
    emb, _ = built
    v = emb.encode(["", "   ", "hello"])  # type: ignore[attr-defined]
    assert np.isfinite(v).all()
