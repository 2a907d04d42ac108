"""Helpers shared by the registry tests."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llmroute.config import Settings
from llmroute.router.router import Router


@dataclass(frozen=True)
class Trained:
    router: Router
    folder: Path
    logs: Path


def fresh_copy(trained: Trained, dst: Path) -> tuple[Router, Path]:
    """A private copy of a trained router folder and the router loaded from it (same embedder object)."""
    folder = dst / "router"
    shutil.copytree(trained.folder, folder)
    return Router.load(folder, trained.router.embedder), folder


def store_settings(home: Path, store_dir: Path) -> Settings:
    """Settings with a private SQLite tracking store in ``store_dir`` (artifacts next to it)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    return Settings(home=home, tracking_uri=f"sqlite:///{store_dir / 'mlflow.db'}")


def held_out_prompts(path: Path, n: int = 300) -> list[str]:
    from llmroute.data.importers import read_logs

    df = read_logs(path)
    return list(df.drop_duplicates("prompt_id")["prompt"].astype(str).iloc[:n])


def assert_same_decisions(a: Router, b: Router, prompts: list[str], routed: int = 25) -> None:
    """``b`` decides exactly as ``a``: identical probabilities and expected costs on every prompt, the
    same model at every knob of the default rule and at the default target (batch), and identical
    :meth:`Router.route` decisions (all but the version string) on the first ``routed`` prompts."""
    import dataclasses

    import numpy as np

    from llmroute.router import policy

    assert a.models == b.models
    assert a.default_rule == b.default_rule and a.default_target == b.default_target
    pa, ca = a.predict(a.prepare(prompts))
    pb, cb = b.predict(b.prepare(prompts))  # b embeds with its own (registry-loaded) embedder
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(policy.sweep(a.default_rule, pa, ca), policy.sweep(b.default_rule, pb, cb))
    knob_a, _ = a.knob_tables[a.default_rule].knob_for(a.default_target)
    knob_b, _ = b.knob_tables[b.default_rule].knob_for(b.default_target)
    assert knob_a == knob_b
    mask = np.ones_like(pa, dtype=bool)
    np.testing.assert_array_equal(
        policy.choose(a.default_rule, pa, ca, mask, knob_a)[0], policy.choose(b.default_rule, pb, cb, mask, knob_b)[0]
    )
    for p in prompts[:routed]:
        da, db = a.route(p), b.route(p)
        assert dataclasses.replace(da, router_version="") == dataclasses.replace(db, router_version="")
