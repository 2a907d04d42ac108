"""Routers and decisions as records: a router is immutable (changes make a new router), a decision
carries the embedding it was made with (no copy, not in its JSON), targets are values, and the
router's info is typed and round-trips through router.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from llmroute.abtest.arms import AlwaysPolicy
from llmroute.router.decision import QualityTarget, RouteQuery
from llmroute.router.router import Router
from llmroute.router.router_info import RouterInfo
from tests.router.helpers import Trained

PROMPT = "Write a python function that returns the n-th Fibonacci number, using memoisation."


def test_a_router_cannot_be_changed_in_place(router: Router) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        router.version = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        router.embedder = router.embedder  # type: ignore[misc]
    with pytest.raises(TypeError):
        router.specs[router.models[0]] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        router.knob_tables["x"] = next(iter(router.knob_tables.values()))  # type: ignore[index]


def test_with_version_and_with_info_make_new_routers(router: Router) -> None:
    before = router.route(PROMPT)
    renamed = router.with_version("llmroute/7")
    assert renamed is not router and router.version != "llmroute/7"
    assert renamed.route(PROMPT) == dataclasses.replace(before, router_version="llmroute/7")
    assert router.route(PROMPT) == before
    assert renamed.quality is router.quality and renamed.embedder is router.embedder  # nothing big is copied
    lineage = {"source": "production"}
    retrained = router.with_info(lineage=lineage)
    assert retrained.info.lineage == lineage and router.info.lineage is None
    assert retrained.info.n_prompts == router.info.n_prompts
    # a catalog change is a new router too, and the original keeps its own entries
    m = router.models[0]
    spec = router.specs[m]
    assert spec is not None
    local = router.with_catalog({m: dataclasses.replace(spec, local=True)})
    assert local.specs[m].local and router.specs[m] == spec  # type: ignore[union-attr]


def test_a_decision_carries_its_embedding_row_without_copying_it(router: Router) -> None:
    d = router.route(PROMPT)
    assert d.embedding is not None
    assert np.array_equal(d.embedding, router.embed([PROMPT])[0])
    assert not d.embedding.flags.writeable
    # a batch's decisions get views of the batch's embedding array (no per-request copy)
    prompts = [PROMPT, "What is 2 + 2?", "Translate 'cat' into French."]
    prepared = router.prepare(prompts, independent_rows=True)
    batch = router.route_many([RouteQuery(p) for p in prompts], prepared)
    for i, got in enumerate(batch):
        assert not isinstance(got, ValueError)
        assert got.embedding is not None and np.shares_memory(got.embedding, prepared.embeddings)
        assert np.array_equal(got.embedding, prepared.embeddings[i])
    # the embedding is no part of the decision's identity, repr or JSON
    other = dataclasses.replace(d, embedding=None)
    assert other == d and "embedding" not in repr(d)
    out = d.to_dict()
    assert "embedding" not in out and out["target"] == str(router.default_target)
    json.dumps(out)  # JSON-ready


def test_decisions_made_from_predictions_alone_have_no_embedding(router: Router) -> None:
    prepared = router.prepare([PROMPT])
    probs, costs = router.predict(prepared)
    [d] = router.decide_all([RouteQuery(PROMPT)], probs, costs, prepared.input_tokens)
    assert not isinstance(d, ValueError) and d.embedding is None


def test_a_static_arm_decision_keeps_its_reference_routers_embedding(router: Router) -> None:
    d = AlwaysPolicy(router.models[-1], reference=router).route(RouteQuery(PROMPT))
    assert d.model == router.models[-1] and d.target is None
    assert d.embedding is not None and np.array_equal(d.embedding, router.embed([PROMPT])[0])
    assert AlwaysPolicy(router.models[-1]).route(RouteQuery(PROMPT)).embedding is None


def test_the_decision_target_is_a_value(router: Router) -> None:
    d = router.route(PROMPT, target=QualityTarget(0.9))
    assert d.target == QualityTarget(0.9)
    assert router.route(PROMPT, target=QualityTarget(0.7, "absolute")).target == QualityTarget(0.7, "absolute")
    assert router.route(PROMPT, confidence=0.6).target is None


@pytest.mark.parametrize("target", [QualityTarget(0.95), QualityTarget(1.5), QualityTarget(0.0),
                                    QualityTarget(0.85, "absolute"), QualityTarget(1.0, "absolute")])
def test_target_text_round_trips(target: QualityTarget) -> None:
    assert QualityTarget.from_str(str(target)) == target


@pytest.mark.parametrize("text", [None, "", "95%", "0.85", "quality", "% of the best model", "quality -1",
                                  "9.5.1% of the best model", "about 95% of the best model"])
def test_target_text_that_is_not_one_is_none(text: str | None) -> None:
    assert QualityTarget.from_str(text) is None


def test_router_info_round_trips_and_names_a_bad_field(small: Trained, tmp_path: Path) -> None:
    raw = json.loads((small.folder / "router.json").read_text())["info"]
    info = RouterInfo.from_dict(raw)
    assert info.to_dict() == raw and info.n_prompts == raw["n_prompts"] and isinstance(info.tasks, tuple)
    future = {**raw, "a_field_from_a_newer_version": {"x": 1}}
    assert RouterInfo.from_dict(future).to_dict() == future  # unknown keys are kept, not dropped
    assert RouterInfo.from_dict(None) == RouterInfo() and RouterInfo().to_dict() == {}
    with pytest.raises(ValueError, match="'n_prompts': expected int, got str"):
        RouterInfo.from_dict({**raw, "n_prompts": "many"})
    with pytest.raises(TypeError, match="RouterInfo"):
        dataclasses.replace(small.router, info=raw)  # type: ignore[arg-type]
    # saved and loaded, the info is the same; a damaged info names the file
    folder = small.router.with_info(lineage={"source": "production"}).save(tmp_path / "r")
    loaded = Router.load(folder, small.router.embedder)
    assert loaded.info == dataclasses.replace(small.router.info, lineage={"source": "production"})
    meta = json.loads((folder / "router.json").read_text())
    meta["info"]["cost_is_estimated"] = "no"
    (folder / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"router\.json: router info field 'cost_is_estimated': expected bool"):
        Router.load(folder, small.router.embedder)
