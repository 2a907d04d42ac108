"""Progress output (defect 8: minutes of silence while training, evaluating and simulating)."""

from __future__ import annotations

import numpy as np
import pytest

from llmroute import progress
from llmroute.router.quality_model import QualityModel, QualityModelParams


@pytest.fixture(autouse=True)
def _restore_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setattr(progress, "_quiet", None)


def test_phases_show_each_phase_and_reach_100_percent(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.Phases("training", {"embedding": 1, "quality model": 3}) as phases:
        with phases.phase("embedding"):
            pass
        assert phases.done == pytest.approx(25.0)
        with phases.phase("quality model") as report:
            report(0.5, "CV fold 2/4")
            assert phases.done == pytest.approx(62.5)
            report(0.25, "going back is ignored")
            assert phases.done == pytest.approx(62.5)
        assert phases.done == pytest.approx(100.0)
    err = capsys.readouterr().err
    assert "training (embedding)" in err and "training (quality model" in err and "100%" in err


def test_quiet_silences_bars_and_lines_and_reaches_subprocesses(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    progress.set_quiet(True)
    assert os.environ[progress.QUIET_ENV] == "1"
    with progress.Phases("training", {"a": 1}) as phases, phases.phase("a") as report:
        report(0.5, "half")
    progress.say("a line")
    b = progress.bar(3, "simulating")
    b.update(3)
    b.close()
    assert capsys.readouterr().err == ""
    progress.set_quiet(False)
    assert progress.QUIET_ENV not in os.environ and not progress.quiet()


def test_quality_model_reports_its_phases_in_order() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((120, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    quality = (rng.random((120, 2)) < 0.6).astype(float)
    heard: list[tuple[float, str]] = []
    params = QualityModelParams(target=0.5, folds=3, max_rounds=20, early_stopping_rounds=5, min_child_samples=5)
    QualityModel(("a", "b"), params).fit(emb, np.zeros((120, 3), np.float32), quality, None, lambda f, s: heard.append((f, s)))
    fractions = [f for f, _ in heard]
    assert np.all(np.diff(fractions) >= -1e-9) and fractions[-1] == pytest.approx(1.0)
    labels = " | ".join(s for _, s in heard)
    assert "CV fold 3/3" in labels and "calibration" in labels and "final model" in labels


def test_phases_started_in_a_row_each_take_their_share() -> None:
    phases = progress.Phases("evaluation", {"a": 1, "b": 1, "c": 2})
    phases.start("a")
    assert phases.done == 0.0
    report = phases.start("b")
    assert phases.done == pytest.approx(25.0)
    report(0.5, "half")
    assert phases.done == pytest.approx(37.5)
    phases.start("c")
    assert phases.done == pytest.approx(50.0)
    phases.close()
    assert phases.done == pytest.approx(100.0)


def test_each_new_label_is_shown_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Steps shorter than the bar's refresh interval still appear (benchmarks/train_scale.py times the
    training's stages from them)."""
    with progress.Phases("training", {"a": 1}) as phases, phases.phase("a") as report:
        report(0.1, "first step")
        report(0.2, "second step")
        report(0.3, "second step")
    err = capsys.readouterr().err
    assert "training (a: first step)" in err and "training (a: second step)" in err
