"""A reload frees the router it replaced by reference counting alone (see ``serving.state.freeze_heap``)."""

from __future__ import annotations

import gc
import weakref

from llmroute.artifacts.loading import load_served
from llmroute.serving.state import RouterHolder
from tests.serving.conftest import Trained


def test_a_replaced_router_forms_no_reference_cycles(trained: Trained) -> None:
    """A reload that keeps the embedder does no full collection, only ``gc.freeze``: right only when the
    router it replaced, its models and their native boosters, are freed as soon as the holder drops them."""
    first, _ = load_served(trained.folder, trained.core)
    first.route("Which planet is the largest in the solar system?")
    holder = RouterHolder(first)
    second, _ = load_served(trained.folder, trained.core, reuse=first.embedder)
    second.route("Which planet is the largest in the solar system?")
    assert second.embedder is first.embedder  # a reload's case: the embedder is kept
    refs = [weakref.ref(first)] + [weakref.ref(v) for v in vars(first).values()
                                   if v is not first.embedder and _weakrefable(v)]
    assert len(refs) > 3  # the router and its parts (quality model, index, policy...)
    gc.collect()
    gc.disable()  # from here on only reference counting frees anything
    try:
        old = holder.swap(second)
        assert old is first
        del old, first
        alive = [r() for r in refs if r() is not None]
        assert alive == [], f"still alive after the swap without a collection: {[type(a).__name__ for a in alive]}"
    finally:
        gc.enable()


def _weakrefable(value: object) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True
