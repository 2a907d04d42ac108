"""Expected cost of a call, per prompt and model, before the call is made."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearCostModel:
    """cost(prompt, model) = per_token[model] * input_tokens + fixed[model], in USD.

    Fitted per model by least squares on logged (input_tokens, cost) pairs, so the fixed part absorbs
    the typical answer length of that model; models without logged costs fall back to catalog prices
    times the input tokens plus ``fallback_output_tokens`` output tokens. The fit is clamped to be
    non-negative.
    """

    models: tuple[str, ...]
    per_token: tuple[float, ...]
    fixed: tuple[float, ...]

    def predict(self, input_tokens: np.ndarray) -> np.ndarray:
        """(n, m) expected USD cost for prompts of ``input_tokens`` tokens."""
        t = np.asarray(input_tokens, dtype=np.float64).reshape(-1, 1)
        return t * np.asarray(self.per_token) + np.asarray(self.fixed)

    @classmethod
    def fit(
        cls,
        models: tuple[str, ...],
        input_tokens: np.ndarray,
        costs: np.ndarray,
        catalog_prices: dict[str, tuple[float | None, float | None]],
        fallback_output_tokens: float = 256.0,
    ) -> LinearCostModel:
        """Fit from a (n,) token vector and a (n, m) cost matrix (NaN = not logged)."""
        per_token, fixed = [], []
        t_all = np.asarray(input_tokens, dtype=np.float64)
        for j, m in enumerate(models):
            c = costs[:, j]
            ok = ~np.isnan(c) & ~np.isnan(t_all)
            if ok.sum() >= 3 and np.ptp(t_all[ok]) > 0:
                a, b = np.polyfit(t_all[ok], c[ok], 1)
                if a < 0:
                    a, b = 0.0, float(np.mean(c[ok]))
                if b < 0:
                    a, b = float(np.sum(c[ok]) / max(np.sum(t_all[ok]), 1.0)), 0.0
            elif ok.any():
                a, b = 0.0, float(np.mean(c[ok]))
            else:
                pin, pout = catalog_prices.get(m, (None, None))
                if pin is None or pout is None:
                    raise ValueError(f"model '{m}': no logged costs and no catalog prices to estimate them")
                a, b = pin / 1e6, pout / 1e6 * fallback_output_tokens
            per_token.append(float(a))
            fixed.append(float(b))
        return cls(models=models, per_token=tuple(per_token), fixed=tuple(fixed))

    def to_dict(self) -> dict[str, object]:
        return {"models": list(self.models), "per_token": list(self.per_token), "fixed": list(self.fixed)}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> LinearCostModel:
        return cls(models=tuple(d["models"]), per_token=tuple(d["per_token"]), fixed=tuple(d["fixed"]))
