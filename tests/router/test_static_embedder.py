"""The static (model2vec) distillation of the bundled MiniLM: built once, then loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmroute.router.embedder import BUNDLED_STATIC, STATIC_PCA_DIMS, load_embedder

TEXTS = ["Write a python function to reverse a string.", "Which gas do plants absorb?", "x" * 5000]


@pytest.fixture(scope="module")
def built(static_embedders_dir: Path) -> tuple[object, Path]:
    """The static embedder the session distilled (10-100 s, once), loaded."""
    return load_embedder(BUNDLED_STATIC, static_embedders_dir), static_embedders_dir


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


@pytest.mark.slow
def test_static_model_runs_in_numpy_bit_for_bit_like_sentence_transformers(built: tuple[object, Path]) -> None:
    """Defect 7: routing with the default static embedder imported torch and sentence-transformers."""
    from llmroute.router.embedder import SentenceTransformerEmbedder
    from llmroute.router.static_embedder import NumpyStaticEmbedder

    emb, embedders = built
    assert isinstance(emb, NumpyStaticEmbedder)
    reference = SentenceTransformerEmbedder(BUNDLED_STATIC, embedders / BUNDLED_STATIC)
    assert reference.fingerprint == emb.fingerprint  # type: ignore[attr-defined]
    texts = [*TEXTS, "", "   ", "Zürich 東京 😀", "word " * 2000]
    np.testing.assert_array_equal(emb.encode(texts), reference.encode(texts))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_loading_the_static_embedder_and_a_router_never_imports_torch(built: tuple[object, Path]) -> None:
    import json
    import subprocess
    import sys

    _, embedders = built
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import llmroute.cli, llmroute.router.router, llmroute.training.loading\n"
        "from llmroute.router.embedder import load_embedder\n"
        f"e = load_embedder('minilm-static', Path({str(embedders)!r}))\n"
        "e.encode(['hello world'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
