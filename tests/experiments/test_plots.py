"""The cost-quality plot writes a readable PNG of the promised size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from llmroute.experiments.plots import plot_cost_quality


def _example() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[float, float]]]:
    alpha = np.linspace(0, 1, 15)
    learned = (0.0002 + 0.004 * alpha**1.5, 0.62 + 0.25 * np.sqrt(alpha))
    knn = (0.0002 + 0.004 * alpha, 0.62 + 0.2 * alpha)
    points = {
        "always small": (0.0002, 0.62),
        "always large": (0.0042, 0.86),
        "oracle": (0.0011, 0.93),
    }
    return {"learned": learned, "kNN": knn}, points


def test_plot_writes_png_of_expected_size(tmp_path: Path) -> None:
    curves, points = _example()
    out = plot_cost_quality(
        curves, points, tmp_path / "sub" / "plane.png", "synthetic", highlight="learned"
    )
    assert out.exists() and out.stat().st_size > 0
    image = imread(out)
    assert image.shape[:2] == (700, 1000)
    assert image.std() > 0  # not a blank canvas


def test_plot_falls_back_to_linear_axis_for_free_models(tmp_path: Path) -> None:
    curves, points = _example()
    points["local model"] = (0.0, 0.5)
    out = plot_cost_quality(curves, points, tmp_path / "linear.png", "free model", log_x=True)
    assert imread(out).shape[:2] == (700, 1000)


def test_plot_rejects_unknown_highlight_and_empty_input(tmp_path: Path) -> None:
    curves, points = _example()
    with pytest.raises(ValueError, match="highlight"):
        plot_cost_quality(curves, points, tmp_path / "x.png", "t", highlight="nope")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_cost_quality({}, {}, tmp_path / "x.png", "t")


def test_point_labels_never_overlap_and_curves_differ_by_style() -> None:
    """Defect 11: in the plot, labels overprinted and the learned, task-hint and static curves could not
    be told apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from llmroute.experiments.plots import CURVE_STYLES, declutter

    fig = Figure(figsize=(10, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 1)
    # eleven models crowded at nearly one point, as RouterBench's cheap models are
    labels = [ax.annotate(f"model number {i}", (5 + 0.01 * i, 0.5 + 0.001 * i), xytext=(7, 5),
                          textcoords="offset points", fontsize=9) for i in range(11)]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()

    from matplotlib.text import Text

    def overlaps() -> int:
        boxes = [Text.get_window_extent(t, renderer) for t in labels]
        return sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])

    assert overlaps() > 0
    declutter(fig, labels)
    assert overlaps() == 0
    assert len(set(CURVE_STYLES)) == len(CURVE_STYLES) >= 3  # learned, task hint, static: three looks


def test_plot_with_crowded_points_writes_png(tmp_path: Path) -> None:
    curves, _ = _example()
    points = {f"m{i}": (0.0002 * (1 + 0.01 * i), 0.6 + 0.001 * i) for i in range(11)}
    out = plot_cost_quality(curves, points, tmp_path / "crowded.png", "crowded", highlight="learned")
    assert imread(out).shape[:2] == (700, 1000)
