"""A reload shares the embedder already serving when the new router records the same one."""

from __future__ import annotations

import pytest

from llmroute.artifacts import loading
from llmroute.artifacts.manifest import reusable
from llmroute.config import load_settings
from tests.router.helpers import HashEmbedder, Trained


def test_same_spec_and_fingerprint_is_reused(small: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_load(spec: str, _dir: object) -> object:
        raise AssertionError(f"embedder {spec} loaded again")

    import llmroute.router.embedder as embedder_mod

    monkeypatch.setattr(embedder_mod, "load_embedder", no_load)
    router = loading.load_router(str(small.folder), load_settings(home=small.home), reuse=small.embedder)  # type: ignore[arg-type]
    assert router.embedder is small.embedder


def test_another_embedder_is_not_reused(small: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []

    def load(spec: str, _dir: object) -> object:
        loaded.append(spec)
        return small.embedder

    import llmroute.router.embedder as embedder_mod

    monkeypatch.setattr(embedder_mod, "load_embedder", load)
    other = HashEmbedder(spec="minilm", fingerprint="not-the-same")
    router = loading.load_router(str(small.folder), load_settings(home=small.home), reuse=other)  # type: ignore[arg-type]
    assert loaded == ["minilm"] and router.embedder is small.embedder


def test_reusable_needs_spec_and_fingerprint() -> None:
    e = HashEmbedder(spec="s", fingerprint="f")
    assert reusable(e, {"spec": "s", "fingerprint": "f"})
    assert not reusable(e, {"spec": "s", "fingerprint": "g"})
    assert not reusable(e, {"spec": "t", "fingerprint": "f"})
    assert not reusable(None, {"spec": "s", "fingerprint": "f"})
