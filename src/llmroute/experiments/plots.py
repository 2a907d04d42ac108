"""The cost-quality picture: router curves against single models and the oracle.

matplotlib is used through its object API with the Agg canvas chosen inside the function,
so importing this module (or calling it) never changes the process-wide pyplot backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmroute.experiments.metrics import upper_hull

__all__ = ["plot_cost_quality"]

_PER_THOUSAND = 1000.0
_SIZE_IN = (10.0, 7.0)
_DPI = 100  # 10 x 7 inches at 100 dpi = 1000 x 700 pixels


_DENSE = 40  # samples per hull segment, so straight (mixable) segments curve on a log axis


def _segments(hc: np.ndarray, hq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample each hull segment densely in linear cost (vertices at every ``_DENSE``-th index)."""
    if hc.size == 1:
        return hc, hq
    t = np.linspace(0.0, 1.0, _DENSE, endpoint=False)
    xs = (hc[:-1, None] + t * np.diff(hc)[:, None]).ravel()
    ys = (hq[:-1, None] + t * np.diff(hq)[:, None]).ravel()
    return np.append(xs, hc[-1]), np.append(ys, hq[-1])


def _vertex_marks(n_vertices: int, step: int) -> list[int]:
    return [i * step for i in range(n_vertices)]


def _usd(x: float, _pos: int | None = None) -> str:
    if x == 0:
        return "$0"
    return f"${x:,.0f}" if x >= 100 else f"${x:.3g}"


def plot_cost_quality(
    curves: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    points: Mapping[str, tuple[float, float]],
    path: str | Path,
    title: str,
    highlight: str | None = None,
    log_x: bool = True,
) -> Path:
    """Draw routers' cost-quality curves with single models and the oracle; save as PNG.

    Each router in ``curves`` is drawn as the line through its :func:`upper_hull` (what
    mixing knob values can reach) over its raw points drawn faintly. Each entry of
    ``points`` (single models, the oracle, other one-point baselines) is a labelled marker;
    a name containing "oracle" (any case) gets a star. Costs are given per query in USD and
    plotted per 1,000 queries. The image is 1000 x 700 pixels.

    Args:
        curves: router name → ``(mean costs per query in USD, mean qualities)``.
        points: name → ``(mean cost per query in USD, mean quality)``.
        path: where to write the PNG; missing parent folders are created.
        title: the figure title (name the data set and split).
        highlight: a router name in ``curves`` to draw boldly on top of the others.
        log_x: use a log cost axis; ignored (linear axis) if any cost is zero or negative.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not curves and not points:
        raise ValueError("nothing to plot: curves and points are both empty")
    if highlight is not None and highlight not in curves:
        raise ValueError(f"highlight {highlight!r} is not one of the curves {sorted(curves)}")

    prepared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (costs, quals) in curves.items():
        c = np.asarray(costs, dtype=np.float64).reshape(-1)
        q = np.asarray(quals, dtype=np.float64).reshape(-1)
        if c.size == 0 or c.shape != q.shape:
            raise ValueError(
                f"curve {name!r}: need equally long, non-empty costs and qualities, "
                f"got {c.size} and {q.size}"
            )
        prepared[name] = (c, q)
    all_x = np.concatenate(
        [c for c, _ in prepared.values()]
        + [np.asarray([p[0] for p in points.values()], dtype=np.float64)]
    )
    use_log = log_x and bool(np.all(all_x > 0))

    fig = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(10)]

    handles: list[Line2D] = []
    for i, name in enumerate(prepared):
        colour = colours[i % len(colours)]
        style, mark = CURVE_STYLES[i % len(CURVE_STYLES)]
        c, q = prepared[name]
        bold = name == highlight
        z = 4 if bold else 3
        ax.scatter(c * _PER_THOUSAND, q, s=14, color=colour, alpha=0.3, linewidths=0, zorder=z)
        hc, hq = upper_hull(c, q)
        lx, ly = _segments(hc, hq) if use_log else (hc, hq)
        (line,) = ax.plot(
            lx * _PER_THOUSAND,
            ly,
            color=colour,
            linewidth=3.0 if bold else 1.6,
            linestyle="-" if bold else style,
            alpha=1.0 if bold or highlight is None else 0.75,
            marker=mark,
            markevery=_vertex_marks(hc.size, 1 if not use_log else _DENSE),
            markersize=4 if bold else 3,
            label=name,
            zorder=z,
        )
        handles.append(line)

    has_model = False
    labels = []
    for name, (cost, qual) in points.items():
        x = float(cost) * _PER_THOUSAND
        if "oracle" in name.lower():
            ax.scatter([x], [qual], marker="*", s=220, color="black", zorder=6)
        else:
            has_model = True
            ax.scatter([x], [qual], marker="D", s=42, color="0.35", edgecolors="white", zorder=5)
        labels.append(ax.annotate(
            name,
            (x, float(qual)),
            xytext=(7, 5),
            textcoords="offset points",
            fontsize=9,
            color="0.15",
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.75,
            },
            arrowprops={"arrowstyle": "-", "color": "0.55", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 3},
            zorder=7,
        ))
    if has_model:
        handles.append(
            Line2D([], [], linestyle="none", marker="D", color="0.35", label="single model")
        )
    if any("oracle" in n.lower() for n in points):
        handles.append(
            Line2D(
                [], [], linestyle="none", marker="*", markersize=12, color="black", label="oracle"
            )
        )

    if use_log:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(_usd))
    scale = "log scale" if use_log else "linear scale"
    ax.set_xlabel(f"Mean cost per 1,000 queries (USD, {scale})", fontsize=11)
    ax.set_ylabel("Mean quality", fontsize=11)
    ax.set_title(title, fontsize=13)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.08, y=0.06)
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)

    declutter(fig, labels)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, format="png")
    return out


CURVE_STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ("--", "v"), ("-.", "P"), (":", "X"))
"""(line style, marker) per router curve, in order, so that curves differ by more than colour."""


def declutter(fig: Any, labels: list[Any], gap_px: float = 2.0, rounds: int = 5) -> None:
    """Move point labels (matplotlib annotations in offset points) up until no two boxes overlap:
    labels are taken from the lowest up, and each one that overlaps a label already placed moves just
    above it (a thin leader line keeps it tied to its point). The guarantee: after the call no two
    label boxes overlap (checked after a fresh layout; up to ``rounds`` passes)."""
    if len(labels) < 2:
        return
    from matplotlib.text import Text

    for t in labels:
        t.set_in_layout(False)  # labels never squeeze the axes
    to_points = 72.0 / fig.dpi
    for _ in range(rounds):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [Text.get_window_extent(t, renderer).frozen() for t in labels]  # the text, not its leader line
        order = sorted(range(len(labels)), key=lambda i: (boxes[i].y0, boxes[i].x0))
        placed: list[Any] = []
        moved = False
        for i in order:
            b = boxes[i]
            shift = 0.0
            changed = True
            while changed:
                changed = False
                for o in placed:
                    if b.x0 < o.x1 and o.x0 < b.x1 and b.y0 + shift < o.y1 and o.y0 < b.y1 + shift:
                        shift = o.y1 - b.y0 + gap_px
                        changed = True
            if shift:
                x, y = labels[i].xyann
                labels[i].xyann = (x, y + shift * to_points)
                b = b.translated(0, shift)
                moved = True
            placed.append(b)
        if not moved:
            return
    fig.canvas.draw()
