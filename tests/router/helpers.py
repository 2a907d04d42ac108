"""Shared helpers for the router, training and end-to-end tests.

The expensive pieces (loading the bundled MiniLM transformer, training a small router on a slice of
the bundled RouterBench logs) are memoised here so that every test directory reuses them within one
pytest session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmroute.data.catalog import ModelSpec

REPO = Path(__file__).resolve().parents[2]
ROUTERBENCH = REPO / "data" / "routerbench"
FIXTURES = REPO / "tests" / "fixtures"
ALLOWED_ROUTER_SUFFIXES = {".json", ".yaml", ".txt", ".npz"}

ROUTERBENCH_MODELS = (
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Run LightGBM (and torch) on one OpenMP thread.

    The quality model asks LightGBM for every core (``num_threads: 0``); on a busy 2-core machine
    its OpenMP threads spin against each other and a small fit takes ~8x longer. One thread keeps
    the suite's run time predictable; results do not depend on the thread count we assert on.
    """
    import lightgbm  # noqa: F401  - load its OpenMP runtime so the limit reaches it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


# ---- embedders ---------------------------------------------------------------------------------


class CountingEmbedder:
    """Proxy over a real embedder that counts encode calls and texts; may fake another fingerprint."""

    def __init__(self, inner: object, fingerprint: str | None = None, spec: str | None = None) -> None:
        self.inner = inner
        self.spec = spec or inner.spec  # type: ignore[attr-defined]
        self.fingerprint = fingerprint or inner.fingerprint  # type: ignore[attr-defined]
        self.dim = inner.dim  # type: ignore[attr-defined]
        self.independent_rows = bool(getattr(inner, "independent_rows", False))
        self.calls = 0
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.encode(texts)  # type: ignore[attr-defined]


class MemoEmbedder:
    """Same spec and fingerprint as ``inner``; remembers every text it embedded (fast repeated routing)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.spec = inner.spec  # type: ignore[attr-defined]
        self.fingerprint = inner.fingerprint  # type: ignore[attr-defined]
        self.dim = inner.dim  # type: ignore[attr-defined]
        self.independent_rows = bool(getattr(inner, "independent_rows", False))
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for t, v in zip(missing, self.inner.encode(missing)):  # type: ignore[attr-defined]
                self._memo[t] = v
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


class HashEmbedder:
    """A cheap deterministic stand-in embedder (no model): unit vectors seeded by the text's hash (each
    row depends on its text alone: ``independent_rows``)."""

    independent_rows = True

    def __init__(self, dim: int = 16, fingerprint: str = "hash-v1", spec: str = "hash") -> None:
        self.dim = dim
        self.fingerprint = fingerprint
        self.spec = spec
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


_MINILM: dict[str, object] = {}


def minilm() -> object:
    """The bundled MiniLM transformer embedder, loaded once per session."""
    if "e" not in _MINILM:
        from llmroute.router.embedder import load_embedder

        _MINILM["e"] = load_embedder("minilm", Path("/nonexistent-embedders-dir-not-used"))
    return _MINILM["e"]


# ---- data slices --------------------------------------------------------------------------------


def write_slice(src: Path, dst: Path, n_prompts: int, seed: int = 0) -> Path:
    """Write ``n_prompts`` randomly chosen prompts (all their model rows) of ``src`` to ``dst``."""
    from llmroute.data.importers import read_logs, write_logs

    df = read_logs(src)
    ids = pd.Series(df["prompt_id"].unique()).sample(n_prompts, random_state=seed)
    write_logs(df[df["prompt_id"].isin(set(ids))], dst)
    return dst


def sample_prompts(n: int, seed: int = 1) -> list[str]:
    """``n`` prompt texts from the bundled RouterBench test split (every task represented)."""
    df = pd.read_parquet(ROUTERBENCH / "test.parquet", columns=["prompt_id", "prompt", "task"])
    first = df.drop_duplicates("prompt_id")
    return [str(p) for p in first.sample(n, random_state=seed)["prompt"]]




# ---- a small trained router ---------------------------------------------------------------------


@dataclass
class Trained:
    router: object
    folder: Path
    home: Path
    train_path: Path
    embedder: object
    extra: dict[str, object] = field(default_factory=dict)


_TRAINED: dict[str, Trained] = {}
N_TRAIN_PROMPTS = 250


def trained_router(base: Path) -> Trained:
    """Train (once per session) a router on a 250-prompt slice of the bundled train split."""
    if "r" in _TRAINED:
        return _TRAINED["r"]
    from llmroute.config import load_settings
    from llmroute.training import train as train_mod

    home = base / "home"
    train_path = write_slice(ROUTERBENCH / "train.parquet", base / "slice_train.parquet", N_TRAIN_PROMPTS)
    embedder = minilm()
    with pytest.MonkeyPatch.context() as mp, one_openmp_thread():
        mp.setenv("LLMROUTE_HOME", str(home))
        # reuse the session's loaded MiniLM instead of loading the transformer again (saves seconds)
        mp.setattr(train_mod, "load_embedder", lambda spec, _dir: embedder)
        settings = load_settings(home=home)
        router, folder = train_mod.train_router(
            train_path, settings, train_mod.TrainConfig(embedder="minilm", with_scorer=False), out_dir=home / "routers" / "small"
        )
    _TRAINED["r"] = Trained(router, folder, home, train_path, embedder)
    return _TRAINED["r"]


def make_spec(name: str, **kw: object) -> ModelSpec:
    """A catalog entry with test defaults; keyword arguments override fields."""
    from dataclasses import replace

    base = ModelSpec(
        name=name, provider="test", endpoint=None, api_key_env=None, context_window=None,
        input_price_per_1m=1.0, output_price_per_1m=2.0, typical_latency_ms=None,
        capabilities=("chat",), local=False, aliases=(), notes=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]
