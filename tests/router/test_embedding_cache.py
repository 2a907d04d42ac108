"""EmbeddingCache: texts are embedded once per embedder fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmroute.router.embedder import EmbeddingCache
from tests.router.helpers import CountingEmbedder, HashEmbedder

TEXTS = [
    "Write a python function to reverse a string.",
    "Which gas do plants absorb from the air?",
    "Write a python function to reverse a string.",  # duplicate
    "The trophy didn't fit in the suitcase because _ was too big.",
]


def test_second_encode_reads_the_cache(tmp_path: Path, minilm_embedder: object) -> None:
    cache = EmbeddingCache(tmp_path / "cache" / "emb.sqlite")
    counting = CountingEmbedder(minilm_embedder)
    first = cache.encode(counting, TEXTS, progress=False)
    assert first.shape == (4, counting.dim) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    assert counting.calls == 1 and sorted(counting.texts) == sorted(set(TEXTS))  # duplicates embedded once
    # identical to embedding directly
    np.testing.assert_allclose(first, minilm_embedder.encode(TEXTS), atol=1e-6)  # type: ignore[attr-defined]

    second = cache.encode(counting, TEXTS, progress=False)
    assert counting.calls == 1, "the cached texts were embedded again"
    np.testing.assert_array_equal(second, first)

    # a new cache object on the same file (a later process) still hits
    again = EmbeddingCache(tmp_path / "cache" / "emb.sqlite").encode(counting, list(reversed(TEXTS)), progress=False)
    assert counting.calls == 1
    np.testing.assert_array_equal(again, first[::-1])


def test_another_fingerprint_is_recomputed(tmp_path: Path, minilm_embedder: object) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    a = CountingEmbedder(minilm_embedder)
    cache.encode(a, TEXTS, progress=False)
    b = CountingEmbedder(minilm_embedder, fingerprint="0123456789abcdef")
    cache.encode(b, TEXTS, progress=False)
    assert a.calls == 1 and b.calls == 1 and len(b.texts) == 3


def test_only_new_texts_are_embedded(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    emb = HashEmbedder()
    first = cache.encode(emb, ["a", "b"], progress=False)
    counting = CountingEmbedder(emb)
    out = cache.encode(counting, ["b", "c", "a", "c"], progress=False)
    assert counting.calls == 1 and counting.texts == ["c"]
    np.testing.assert_array_equal(out[0], first[1])
    np.testing.assert_array_equal(out[2], first[0])
    np.testing.assert_array_equal(out[1], out[3])
    np.testing.assert_array_equal(out, emb.encode(["b", "c", "a", "c"]))


def test_many_texts_and_empty_input(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    emb = HashEmbedder(dim=8)
    texts = [f"prompt {i}" for i in range(1200)]  # more than one SQL chunk and one embedding batch
    out = cache.encode(emb, texts, progress=False)
    np.testing.assert_array_equal(out, emb.encode(texts))
    counting = CountingEmbedder(emb)
    np.testing.assert_array_equal(cache.encode(counting, texts, progress=False), out)
    assert counting.calls == 0
    empty = cache.encode(emb, [], progress=False)
    assert empty.shape == (0, 8) and empty.dtype == np.float32


def _fill(path: str, k: int) -> None:
    from tests.router.helpers import HashEmbedder

    cache = EmbeddingCache(Path(path))
    for r in range(4):
        texts = [f"{k}-{r}-{i}" for i in range(2000)] + [f"shared-{i}" for i in range(1000)]
        cache.encode(HashEmbedder(8), texts, progress=False)


def test_several_processes_write_one_cache(tmp_path: Path) -> None:
    """Dask workers on one machine share the cache file: concurrent writers wait, none fails."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "shared.sqlite")
    procs = [ctx.Process(target=_fill, args=(path, k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    from tests.router.helpers import HashEmbedder

    counting = HashEmbedder(8)
    EmbeddingCache(Path(path)).encode(counting, [f"2-3-{i}" for i in range(2000)], progress=False)
    assert counting.calls == 0  # everything the processes embedded is there
