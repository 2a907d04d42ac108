"""Saving and loading a trained router: same decisions, embedder check, no pickles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmroute.router.decision import Constraints, QualityTarget
from llmroute.router.embedder import EmbedderMismatchError
from llmroute.router.router import Router, read_router_meta
from tests.router.helpers import ALLOWED_ROUTER_SUFFIXES, HashEmbedder, MemoEmbedder, Trained, sample_prompts


@pytest.fixture(scope="module")
def loaded(small: Trained, memo_embedder: MemoEmbedder) -> Router:
    return Router.load(small.folder, memo_embedder)


@pytest.fixture(scope="module")
def prompts(memo_embedder: MemoEmbedder) -> list[str]:
    from llmroute.router.text import focus_text

    ps = sample_prompts(100, seed=5)
    memo_embedder.encode([focus_text(p) for p in ps])
    return ps


def test_loaded_router_has_the_same_parts(small: Trained, loaded: Router) -> None:
    r = small.router
    assert loaded.models == r.models and loaded.version == r.version
    assert loaded.default_rule == r.default_rule and loaded.default_target == r.default_target
    assert loaded.knob_tables == r.knob_tables
    assert loaded.cost_model == r.cost_model
    assert loaded.specs == r.specs
    assert loaded.info.to_dict() == json.loads(json.dumps(r.info.to_dict(), default=str))
    meta = read_router_meta(small.folder)
    assert meta["embedder"] == {"spec": "minilm", "fingerprint": small.embedder.fingerprint}  # type: ignore[attr-defined]


def test_same_probabilities_and_decisions(small: Trained, router: Router, loaded: Router, prompts: list[str]) -> None:
    prep = router.prepare(prompts)
    p1, c1 = router.predict(prep)
    p2, c2 = loaded.predict(loaded.prepare(prompts))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(c1, c2)
    tasks = ["mbpp", None, "winogrande", "arc-challenge"] * 25
    np.testing.assert_array_equal(router.predict(prep, tasks)[0], loaded.predict(prep, tasks)[0])
    settings = [
        {},
        {"target": QualityTarget(0.9), "rule": "threshold"},
        {"target": QualityTarget(0.8, "absolute"), "rule": "utility"},
        {"confidence": 0.6, "constraints": Constraints(excluded_models=("gpt-4-1106-preview",))},
    ]
    for i, prompt in enumerate(prompts):
        kw = settings[i % len(settings)]
        assert loaded.route(prompt, **kw) == router.route(prompt, **kw)  # type: ignore[arg-type]


def test_loading_with_another_embedder_raises(small: Trained) -> None:
    other = HashEmbedder(fingerprint="ffffeeeeddddcccc", spec="some-other-embedder")
    with pytest.raises(EmbedderMismatchError) as exc:
        Router.load(small.folder, other)
    msg = str(exc.value)
    assert "'minilm'" in msg and small.embedder.fingerprint in msg  # type: ignore[attr-defined]
    assert "'some-other-embedder'" in msg and "ffffeeeeddddcccc" in msg
    assert str(small.folder) in msg


def _assert_plain_files(folder: Path) -> None:
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert files
    assert {f.suffix for f in files} <= ALLOWED_ROUTER_SUFFIXES, sorted(f.name for f in files)
    for f in files:
        assert not f.read_bytes().startswith(b"\x80"), f"{f} looks like a pickle"
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                for key in z.files:
                    assert z[key].dtype != object
        elif f.suffix == ".json":
            json.loads(f.read_text())


def test_no_pickles_are_written(small: Trained, tmp_path: Path, loaded: Router, prompts: list[str]) -> None:
    _assert_plain_files(small.folder)
    assert (small.folder / "router.json").exists() and (small.folder / "catalog_snapshot.yaml").exists()
    # saving a loaded router again gives the same files and the same predictions
    again = loaded.save(tmp_path / "copy")
    _assert_plain_files(again)
    # (training adds manifest.json, the checksums a reload verifies, after saving)
    assert sorted(f.name for f in again.iterdir()) == sorted(
        f.name for f in small.folder.iterdir() if f.name != "manifest.json"
    )
    assert (small.folder / "manifest.json").is_file()
    twice = Router.load(again, loaded.embedder)
    prep = loaded.prepare(prompts[:20])
    np.testing.assert_array_equal(twice.predict(prep)[0], loaded.predict(prep)[0])
