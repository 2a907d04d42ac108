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
    assert first.independent_rows is True  # type: ignore[attr-defined]  # a static model: rows never depend on the batch
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
        "import llmroute.cli, llmroute.router.router, llmroute.artifacts.loading\n"
        "from llmroute.router.embedder import load_embedder\n"
        f"e = load_embedder('minilm-static', Path({str(embedders)!r}))\n"
        "e.encode(['hello world'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


TRICKY = [
    "", "   ", "hello [UNK] world[PAD]x", "a\x0bb", "a\x00b", "tab\tand\nnew\r\nlines", "a_b don't 3.14 $x^2$ {k: v}",
    "UPPER lower MiXeD", "x" * 150, "antidisestablishmentarianism " * 3, "~!@#$%^&*()_+`-=[]\\;',./{}|:\"<>?",
    "Zürich 東京 😀", "word " * 700, "def f(x):\n    return x ** 2  # square",
]


@pytest.mark.slow
def test_plain_ascii_texts_get_the_tokenizers_own_ids_by_the_word_memo(built: tuple[object, Path]) -> None:
    """Issue 19: the per-word fast path must give exactly the ids of ``Tokenizer.encode`` (hence the same
    embeddings), on the bundled benchmark prompts and on texts made to trip it; others fall back."""
    import pandas as pd

    from llmroute.router.static_embedder import NumpyStaticEmbedder, WordPieceWords
    from llmroute.router.text import focus_text

    emb, _ = built
    assert isinstance(emb, NumpyStaticEmbedder)
    words = emb._words
    assert isinstance(words, WordPieceWords)
    root = Path(__file__).resolve().parents[2] / "data"
    prompts = [p for f in ("routerbench/test.parquet", "llmrouter/test.parquet")
               for p in pd.read_parquet(root / f, columns=["prompt"])["prompt"].drop_duplicates().head(400)]
    texts = [focus_text(p) for p in prompts] + prompts[:50] + TRICKY
    fast = 0
    for text in texts:
        want = emb._tokenizer.encode(text, add_special_tokens=False).ids
        got = words.ids(text)
        if got is not None:
            fast += 1
            assert got == want, text[:200]
        assert emb.token_ids([text])[0] == want  # whichever path it takes
    assert fast >= 0.8 * len(texts)  # the bundled prompts are mostly plain ASCII
    for text in ("hello [UNK] world", "a\x0bb", "Zürich", "a\x00b"):  # added tokens, control characters, non-ASCII
        assert words.ids(text) is None
    assert len(words.ids("word " * 700) or []) == 512  # truncated like the tokenizer
    batch = [*TRICKY, *texts[:20]]
    np.testing.assert_array_equal(emb.encode(batch), np.vstack([emb.encode([t]) for t in batch]))


def test_the_word_memo_is_only_used_for_the_bert_wordpiece_pipeline() -> None:
    from llmroute.router.static_embedder import WordPieceWords

    bert = {"normalizer": {"type": "BertNormalizer", "clean_text": True, "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "model": {"type": "WordPiece"}, "post_processor": None,
            "truncation": {"direction": "Right", "max_length": 512, "stride": 0}, "added_tokens": []}
    assert WordPieceWords.for_tokenizer(object(), bert) is not None
    for change in ({"normalizer": {"type": "NFKC"}}, {"pre_tokenizer": {"type": "Whitespace"}},
                   {"model": {"type": "BPE"}}, {"post_processor": {"type": "TemplateProcessing"}},
                   {"truncation": {"direction": "Left", "max_length": 512, "stride": 0}},
                   {"normalizer": {"type": "BertNormalizer", "clean_text": False, "lowercase": True}}):
        assert WordPieceWords.for_tokenizer(object(), {**bert, **change}) is None, change



# the session's static_embedders_dir was built through build_static_minilm_in_child (the real distillation,
# in a child); here the child's code is swapped for a copy of that build, so a fresh process can show what
# the caller imports without distilling twice
BUILD_PROBE = """
import json, sys
from pathlib import Path
import llmroute.router.embedder as emb
emb._BUILD_IN_CHILD = "import shutil, sys; shutil.copytree(%r, sys.argv[1])"
e = emb.load_embedder(emb.BUNDLED_STATIC, Path(sys.argv[1]))
v = e.encode(["Which gas do plants absorb?"])
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "model2vec") if m in sys.modules)
print("PROBE" + json.dumps({"shape": list(v.shape), "heavy": heavy}))
"""


@pytest.mark.slow
def test_building_the_static_embedder_keeps_torch_out_of_the_process(tmp_path: Path, static_embedders_dir: Path) -> None:
    """The first use of minilm-static builds it in a child process: the process that asked for it (a
    `llmroute serve` on a fresh home) never imports torch or transformers, ~450 MiB it would keep."""
    import json
    import os
    import subprocess
    import sys

    built = str(static_embedders_dir / BUNDLED_STATIC)
    out = subprocess.run([sys.executable, "-c", BUILD_PROBE % built, str(tmp_path / "embedders")],
                         capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "building the static MiniLM embedder" in out.stderr
    res = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))[len("PROBE"):])
    assert res == {"shape": [1, STATIC_PCA_DIMS], "heavy": []}
    assert (tmp_path / "embedders" / BUNDLED_STATIC / "modules.json").is_file()


def test_a_failed_build_in_the_child_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmroute.router.embedder as emb

    monkeypatch.setattr(emb, "_BUILD_IN_CHILD", "raise SystemExit(3)")
    with pytest.raises(RuntimeError, match=r"building the static MiniLM embedder in .*minilm-static failed \(exit code 3"):
        emb.load_embedder(emb.BUNDLED_STATIC, tmp_path / "embedders")
