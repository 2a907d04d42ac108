"""The one router loader (llmroute.artifacts.loading) on folders and LATEST: checksums verified on every
source, the fallback rule (no source = the latest trained router, a named source never replaced), and
the CLI failing with the loader's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmroute.artifacts.loading import (
    LATEST,
    LOAD_ERRORS,
    RouterLoadError,
    load_router,
    load_served,
    source_version,
)
from llmroute.artifacts.manifest import DamagedArtifactError
from llmroute.config import Settings
from tests.registry.helpers import Trained, fresh_copy

pytestmark = pytest.mark.slow  # the session's trained router (tests/registry/conftest.py)


def _point_latest(settings: Settings, folder: Path) -> None:
    settings.routers_dir.mkdir(parents=True, exist_ok=True)
    (settings.routers_dir / LATEST).write_text(str(folder.resolve()))


def test_no_source_is_the_latest_trained_router(good: Trained, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(RouterLoadError, match=r"no trained router under .*run `llmroute train` first"):
        load_router(None, settings)
    _, folder = fresh_copy(good, tmp_path)
    _point_latest(settings, folder)
    for source in (None, "", LATEST):
        router = load_router(source, settings)
        assert router.version == good.router.version and router.models == good.router.models
    assert source_version(LATEST, settings) == good.router.version
    # a named source that does not load is an error, never the latest router
    with pytest.raises(RouterLoadError, match="nowhere is not a saved router folder"):
        load_router(str(tmp_path / "nowhere"), settings)


def test_folders_are_checksum_verified(good: Trained, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    _, folder = fresh_copy(good, tmp_path)
    assert (folder / "manifest.json").is_file()
    router, scorer = load_served(str(folder), settings, with_scorer=True)
    assert router.version == good.router.version and scorer is None  # trained without a scorer
    # a file altered after training (the same size: only the checksum can tell)
    meta = folder / "router.json"
    text = meta.read_text()
    meta.write_text(text.replace(good.router.version, good.router.version[::-1], 1))
    with pytest.raises(DamagedArtifactError, match=rf"{folder}: .*damaged: router.json does not match its recorded sha256"):
        load_router(folder, settings)
    meta.write_text(text)
    booster = next(folder.glob("*lightgbm*.txt"))
    booster.unlink()
    with pytest.raises(DamagedArtifactError, match=rf"damaged: {booster.name} is missing"):
        load_router(folder, settings)
    assert DamagedArtifactError in LOAD_ERRORS and RouterLoadError in LOAD_ERRORS


def test_the_cli_fails_with_the_loaders_message(good: Trained, tmp_path: Path) -> None:
    from llmroute.cli import app

    _, folder = fresh_copy(good, tmp_path)
    booster = next(folder.glob("*lightgbm*.txt"))
    booster.write_text(booster.read_text()[:-10])
    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["route", "What is 2 + 2?", "--model", str(folder), "--home", str(home)])
    assert out.exit_code == 2, out.output
    assert f"{booster.name} does not match its recorded sha256" in out.output
    out = CliRunner().invoke(app, ["route", "What is 2 + 2?", "--home", str(home)])
    assert out.exit_code == 2 and "no trained router under" in out.output
