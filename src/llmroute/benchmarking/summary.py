"""Per-model summary of a benchmark run (quality, cost, latency, tokens, consistency) and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llmroute.benchmarking.journal import CallRecord
from llmroute.benchmarking.scorers import normalize

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "calls", "failed", "accuracy", "cost_usd_total", "cost_usd_per_call", "latency_ms_mean",
    "latency_ms_p95", "input_tokens_mean", "output_tokens_mean", "agreement", "score_variance",
)


def summarize(records: Sequence[CallRecord]) -> pd.DataFrame:
    """One row per model, over every repeat.

    ``accuracy`` is the mean quality of scored calls. ``agreement`` is, per prompt with two or more
    scored repeats, the share of repeats giving the most common (normalized) answer, averaged over
    prompts; ``score_variance`` is the mean per-prompt variance of quality across repeats. Both are
    NaN without repeats.
    """
    if not records:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    raw = pd.DataFrame([r.__dict__ for r in records])
    rows = []
    for model, g in raw.groupby("model", sort=False):
        ok = g[g["status"] == "scored"]
        agreement, variance = _consistency(ok)
        rows.append({
            "model": model,
            "calls": len(ok),
            "failed": int((g["status"] == "failed").sum()),
            "accuracy": ok["quality"].mean(),
            "cost_usd_total": ok["cost_usd"].sum(min_count=1),
            "cost_usd_per_call": ok["cost_usd"].mean(),
            "latency_ms_mean": ok["latency_ms"].mean(),
            "latency_ms_p95": ok["latency_ms"].quantile(0.95) if len(ok) else float("nan"),
            "input_tokens_mean": ok["input_tokens"].mean(),
            "output_tokens_mean": ok["output_tokens"].mean(),
            "agreement": agreement,
            "score_variance": variance,
        })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)).astype(dict.fromkeys(SUMMARY_COLUMNS[3:], "float64"))


def _consistency(ok: pd.DataFrame) -> tuple[float, float]:
    agree, var = [], []
    for _, g in ok.groupby("prompt_id"):
        if len(g) < 2:
            continue
        answers = g["response"].astype(str).map(normalize)
        agree.append(answers.value_counts().iloc[0] / len(g))
        var.append(float(g["quality"].astype(float).var(ddof=0)))
    nan = float("nan")
    return (sum(agree) / len(agree) if agree else nan, sum(var) / len(var) if var else nan)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table."""
    head = f"{'model':<32} {'calls':>5} {'fail':>4} {'quality':>7} {'$/call':>10} {'$ total':>9} " \
           f"{'lat ms':>8} {'p95 ms':>8} {'tok in':>7} {'tok out':>7} {'agree':>6} {'var':>6}"
    lines = [head]
    for r in summary.itertuples(index=False):
        lines.append(
            f"{str(r.model)[:32]:<32} {r.calls:>5} {r.failed:>4} {_f(r.accuracy, 3):>7} "
            f"{_f(r.cost_usd_per_call, 6):>10} {_f(r.cost_usd_total, 4):>9} {_f(r.latency_ms_mean, 0):>8} "
            f"{_f(r.latency_ms_p95, 0):>8} {_f(r.input_tokens_mean, 0):>7} {_f(r.output_tokens_mean, 0):>7} "
            f"{_f(r.agreement, 2):>6} {_f(r.score_variance, 3):>6}"
        )
    return "\n".join(lines)


def _f(v: float, digits: int) -> str:
    return "-" if pd.isna(v) else f"{v:.{digits}f}"


def plot_summary(summary: pd.DataFrame, path: str | Path, title: str = "benchmark") -> Path:
    """Quality vs cost per call and quality vs mean latency, one labelled point per model (PNG)."""
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, col, label in ((axes[0], "cost_usd_per_call", "USD per call"),
                           (axes[1], "latency_ms_mean", "mean latency (ms)")):
        for r in summary.itertuples(index=False):
            x, y = getattr(r, col), r.accuracy
            if pd.isna(x) or pd.isna(y):
                continue
            ax.scatter([x], [y])
            ax.annotate(str(r.model), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("quality (mean score)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
