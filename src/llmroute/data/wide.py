"""Long logs (one row per prompt x model) as prompt-by-model matrices, the shape routers learn from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmroute.data.tokens import count_tokens_array


@dataclass(frozen=True)
class WideLogs:
    """Prompt-by-model view of benchmark logs; NaN marks an outcome (or cost) that was not logged."""

    prompt_ids: tuple[str, ...]
    prompts: tuple[str, ...]
    tasks: tuple[str | None, ...]
    models: tuple[str, ...]
    quality: np.ndarray
    cost: np.ndarray
    input_tokens: np.ndarray
    cost_is_estimated: bool

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(self, rows: np.ndarray) -> WideLogs:
        rows = np.asarray(rows)
        return WideLogs(
            prompt_ids=tuple(self.prompt_ids[i] for i in rows),
            prompts=tuple(self.prompts[i] for i in rows),
            tasks=tuple(self.tasks[i] for i in rows),
            models=self.models,
            quality=self.quality[rows],
            cost=self.cost[rows],
            input_tokens=self.input_tokens[rows],
            cost_is_estimated=self.cost_is_estimated,
        )

    def complete(self) -> tuple[WideLogs, int]:
        """Only prompts whose every model has a known quality and cost, and how many were left out."""
        ok = ~np.isnan(self.quality).any(axis=1) & ~np.isnan(self.cost).any(axis=1)
        return self.subset(np.nonzero(ok)[0]), int((~ok).sum())

    def restrict(self, models: tuple[str, ...]) -> WideLogs:
        """The same prompts with columns for ``models`` (in that order); absent models are all NaN."""
        cols = [self.models.index(m) if m in self.models else -1 for m in models]

        def pick(a: np.ndarray) -> np.ndarray:
            out = np.full((len(self), len(models)), np.nan)
            for k, c in enumerate(cols):
                if c >= 0:
                    out[:, k] = a[:, c]
            return out

        return WideLogs(
            self.prompt_ids, self.prompts, self.tasks, models, pick(self.quality), pick(self.cost),
            self.input_tokens, self.cost_is_estimated,
        )


def to_wide(df: pd.DataFrame, models: tuple[str, ...] | None = None) -> WideLogs:
    """Pivot long logs to :class:`WideLogs` (prompts in first-seen order, models sorted unless given)."""
    if df.empty:
        raise ValueError("the logs are empty")
    prompt_ids = tuple(pd.unique(df["prompt_id"].astype(str)))
    first = df.drop_duplicates("prompt_id").set_index("prompt_id").loc[list(prompt_ids)]
    model_list = models or tuple(sorted(df["model"].astype(str).unique()))
    pos = {p: i for i, p in enumerate(prompt_ids)}
    col = {m: j for j, m in enumerate(model_list)}
    keep = df["model"].astype(str).isin(col)
    sub = df[keep]
    r = sub["prompt_id"].astype(str).map(pos).to_numpy()
    c = sub["model"].astype(str).map(col).to_numpy()
    quality = np.full((len(prompt_ids), len(model_list)), np.nan)
    cost = np.full_like(quality, np.nan)
    quality[r, c] = sub["quality"].to_numpy(dtype=float)
    cost[r, c] = pd.to_numeric(sub["cost_usd"], errors="coerce").to_numpy(dtype=float)
    prompts = tuple(first["prompt"].astype(str))
    tok = pd.to_numeric(first["input_tokens"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(tok).any():
        counted = count_tokens_array([prompts[i] for i in np.nonzero(np.isnan(tok))[0]]).astype(float)
        tok[np.isnan(tok)] = counted
    tasks = tuple(None if pd.isna(t) else str(t) for t in first["task"])
    estimated = bool(df["cost_is_estimated"].fillna(False).astype(bool).any())
    return WideLogs(prompt_ids, prompts, tasks, model_list, quality, cost, tok, estimated)
