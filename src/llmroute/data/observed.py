"""Per-model figures observed in benchmark logs: answer lengths and call latencies.

The router learns what the catalog may not know from the logs it is trained on: how long each model's
answers are (the cost model's expected and capped output tokens) and how long its calls take (a typical
latency for models whose catalog entry has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def output_tokens_matrix(df: pd.DataFrame, prompt_ids: tuple[str, ...], models: tuple[str, ...]) -> np.ndarray:
    """(prompts, models) logged answer lengths in tokens, NaN where not counted (rows and columns in the
    order of ``prompt_ids`` and ``models``, as in :class:`llmroute.data.wide.WideLogs`)."""
    out = np.full((len(prompt_ids), len(models)), np.nan)
    if "output_tokens" not in df.columns:
        return out
    pos = {p: i for i, p in enumerate(prompt_ids)}
    col = {m: j for j, m in enumerate(models)}
    tok = pd.to_numeric(df["output_tokens"], errors="coerce").to_numpy(dtype=float)
    r = df["prompt_id"].astype(str).map(pos).to_numpy()
    c = df["model"].astype(str).map(col).to_numpy()
    ok = ~pd.isna(r) & ~pd.isna(c) & ~np.isnan(tok)
    out[r[ok].astype(int), c[ok].astype(int)] = tok[ok]
    return out


@dataclass(frozen=True)
class ObservedLatency:
    """A model's call latency in the logs: median and 90th percentile in ms over ``calls`` calls."""

    median_ms: float
    p90_ms: float
    calls: int


MIN_LATENCY_CALLS = 5
"""Fewest logged latencies a typical latency is learned from."""


def observed_latencies(df: pd.DataFrame, min_calls: int = MIN_LATENCY_CALLS) -> dict[str, ObservedLatency]:
    """Per model with at least ``min_calls`` logged ``latency_ms`` values, their median and p90."""
    if "latency_ms" not in df.columns:
        return {}
    lat = pd.to_numeric(df["latency_ms"], errors="coerce")
    sub = pd.DataFrame({"model": df["model"].astype(str), "lat": lat}).dropna()
    out = {}
    for model, g in sub.groupby("model", sort=True):
        v = g["lat"].to_numpy(dtype=float)
        if len(v) >= min_calls:
            out[str(model)] = ObservedLatency(float(np.median(v)), float(np.quantile(v, 0.9)), int(len(v)))
    return out
