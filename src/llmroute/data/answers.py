"""Per-call columns of long logs laid out like :class:`~llmroute.data.wide.WideLogs` (prompt x model):
the logged answers the cascade is replayed with, and numeric columns such as latency."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _cells(df: pd.DataFrame, prompt_ids: Sequence[str], models: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    pos = {p: i for i, p in enumerate(prompt_ids)}
    col = {m: j for j, m in enumerate(models)}
    ids, names = df["prompt_id"].astype(str), df["model"].astype(str)
    keep = (ids.isin(pos) & names.isin(col)).to_numpy()
    sub = df[keep]
    return sub, ids[keep].map(pos).to_numpy(), names[keep].map(col).to_numpy()


def answer_matrix(df: pd.DataFrame, prompt_ids: Sequence[str], models: Sequence[str]) -> np.ndarray:
    """(n, m) object array of the logged ``response`` texts; None where a call has no logged answer
    (or the logs have no ``response`` column)."""
    out = np.full((len(prompt_ids), len(models)), None, dtype=object)
    if "response" not in df.columns:
        return out
    sub, r, c = _cells(df, prompt_ids, models)
    vals = sub["response"].to_numpy(dtype=object)
    ok = pd.notna(vals)
    out[r[ok], c[ok]] = [str(v) for v in vals[ok]]
    return out


def value_matrix(df: pd.DataFrame, prompt_ids: Sequence[str], models: Sequence[str], column: str) -> np.ndarray:
    """(n, m) float array of a numeric column; NaN where not logged (or no such column)."""
    out = np.full((len(prompt_ids), len(models)), np.nan)
    if column not in df.columns:
        return out
    sub, r, c = _cells(df, prompt_ids, models)
    out[r, c] = pd.to_numeric(sub[column], errors="coerce").to_numpy(dtype=float)
    return out
