"""Expected cost of a call, per prompt and model, before the call is made.

Two estimates per (prompt, model), both in USD:

- **expected** (:meth:`LinearCostModel.predict`): what the call costs on average. It ranks models (the
  utility rule) and is what the decision reports;
- **cap** (:meth:`LinearCostModel.predict_cap`): a conservative figure that a ``max_cost_usd`` limit
  is checked against, so a cost cap is a promise about money, not about the average.

Both are never below the catalog price arithmetic for the prompt: counted input tokens x input price
+ output tokens x output price, where the output tokens are the model's mean answer length in the
logs (expected) or a high quantile of it (:data:`CAP_QUANTILE`, cap). A least-squares line fitted on
logged costs can only raise them (it carries costs the prices miss, e.g. a provider's minimum charge).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

FALLBACK_OUTPUT_TOKENS = 256.0
"""Expected answer length of a model whose answers were never counted in the logs."""
FALLBACK_CAP_OUTPUT_TOKENS = 1024.0
"""Answer length a cost cap assumes for a model whose answers were never counted in the logs."""
CAP_QUANTILE = 0.95
"""Quantile of a model's logged answer lengths that cost caps assume."""


@dataclass(frozen=True)
class PriceFloor:
    """Catalog price arithmetic for one model: USD per input and output token and the answer lengths
    (tokens) the expected cost and the cap assume. ``price_assumed``: the catalog did not know this
    model's price, so the highest price known for the router's other models is used (see
    :func:`assume_unknown_prices`)."""

    input_per_token: float
    output_per_token: float
    expected_output_tokens: float
    cap_output_tokens: float
    price_assumed: bool = False
    output_tokens_logged: bool = True

    def cost(self, input_tokens: np.ndarray, output_tokens: float | np.ndarray) -> np.ndarray:
        return np.asarray(input_tokens, dtype=np.float64) * self.input_per_token + np.asarray(
            output_tokens, dtype=np.float64
        ) * self.output_per_token


def assume_unknown_prices(
    models: tuple[str, ...], prices: dict[str, tuple[float | None, float | None]]
) -> tuple[dict[str, tuple[float | None, float | None]], set[str]]:
    """Unknown prices made safe: a model whose input or output price is unknown gets the highest input
    and output price known for any of ``models``; returns the completed prices and the models whose
    price was assumed. With no known price at all, the prices stay unknown."""
    known_in = [p[0] for m in models if (p := prices.get(m, (None, None)))[0] is not None]
    known_out = [p[1] for m in models if (p := prices.get(m, (None, None)))[1] is not None]
    out: dict[str, tuple[float | None, float | None]] = {}
    assumed: set[str] = set()
    for m in models:
        pin, pout = prices.get(m, (None, None))
        if (pin is None or pout is None) and known_in and known_out:
            pin = pin if pin is not None else max(known_in)
            pout = pout if pout is not None else max(known_out)
            assumed.add(m)
        out[m] = (pin, pout)
    return out, assumed


@dataclass(frozen=True)
class LinearCostModel:
    """cost(prompt, model) = max(per_token[model] * input_tokens + fixed[model], catalog floor), in USD.

    The line is fitted per model by least squares on logged (input_tokens, cost) pairs and clamped to
    be non-negative; models without logged costs take the floor alone. The floor (``floors``, one
    :class:`PriceFloor` or None per model) is the catalog price arithmetic described in the module
    docstring; a router saved before floors existed has none and predicts the line alone.
    """

    models: tuple[str, ...]
    per_token: tuple[float, ...]
    fixed: tuple[float, ...]
    floors: tuple[PriceFloor | None, ...] = ()

    def _line(self, input_tokens: np.ndarray) -> np.ndarray:
        t = np.asarray(input_tokens, dtype=np.float64).reshape(-1, 1)
        return t * np.asarray(self.per_token) + np.asarray(self.fixed)

    @functools.cached_property
    def _floor_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The floors as columns: (models with a floor, input and output USD per token, expected and
        capped answer tokens), so that a prediction applies them in a few NumPy operations."""
        has = np.array([f is not None for f in self.floors], dtype=bool)
        fs = [f for f in self.floors if f is not None]

        def column(name: str) -> np.ndarray:
            return np.array([getattr(f, name) for f in fs], dtype=np.float64)

        return (has, column("input_per_token"), column("output_per_token"), column("expected_output_tokens"),
                column("cap_output_tokens"))

    def _with_floor(self, input_tokens: np.ndarray, cap: bool, max_output_tokens: int = 0) -> np.ndarray:
        """The line, raised to each model's floor: elementwise the same float64 operations as
        :meth:`PriceFloor.cost` per model (``t * input price + answer * output price``), so the same bits."""
        out = self._line(input_tokens)
        if not self.floors:
            return out
        has, price_in, price_out, expected, capped = self._floor_arrays
        if not has.any():
            return out
        t = np.asarray(input_tokens, dtype=np.float64).reshape(-1, 1)
        answer = capped if cap else expected
        if cap and max_output_tokens:
            answer = np.minimum(answer, float(max_output_tokens))
        out[:, has] = np.maximum(out[:, has], t * price_in + answer * price_out)
        return out

    def predict(self, input_tokens: np.ndarray) -> np.ndarray:
        """(n, m) expected USD cost for prompts of ``input_tokens`` tokens; never below the catalog price
        of those input tokens plus the model's mean logged answer length."""
        return self._with_floor(input_tokens, cap=False)

    def predict_cap(self, input_tokens: np.ndarray, max_output_tokens: int = 0) -> np.ndarray:
        """(n, m) USD cost a ``max_cost_usd`` limit is checked against: never below the catalog price of
        the input tokens plus the :data:`CAP_QUANTILE` quantile of the model's logged answer lengths (or
        ``max_output_tokens`` when the request bounds the answer to fewer tokens), nor below the line
        fitted on logged costs."""
        return self._with_floor(input_tokens, cap=True, max_output_tokens=max_output_tokens)

    @classmethod
    def fit(
        cls,
        models: tuple[str, ...],
        input_tokens: np.ndarray,
        costs: np.ndarray,
        catalog_prices: dict[str, tuple[float | None, float | None]],
        fallback_output_tokens: float = FALLBACK_OUTPUT_TOKENS,
        output_tokens: np.ndarray | None = None,
        cap_quantile: float = CAP_QUANTILE,
        price_floor: bool = True,
    ) -> LinearCostModel:
        """Fit from a (n,) token vector and a (n, m) cost matrix (NaN = not logged).

        ``output_tokens``: an optional (n, m) matrix of logged answer lengths (NaN = not counted) from
        which each model's expected and capped answer length are learned; a model with none uses
        ``fallback_output_tokens`` (expected) and :data:`FALLBACK_CAP_OUTPUT_TOKENS` (cap). Unknown
        catalog prices are completed by :func:`assume_unknown_prices`. ``price_floor=False`` fits the
        line alone where costs are logged (an unbiased estimate of realised cost, e.g. for off-policy
        reward models, rather than the conservative one routing needs). Raises ``ValueError`` for a
        model with neither logged costs nor a price to estimate them from.
        """
        prices, assumed = assume_unknown_prices(models, catalog_prices)
        per_token, fixed, floors = [], [], []
        t_all = np.asarray(input_tokens, dtype=np.float64)
        for j, m in enumerate(models):
            c = costs[:, j]
            ok = ~np.isnan(c) & ~np.isnan(t_all)
            pin, pout = prices.get(m, (None, None))
            floor = None
            if pin is not None and pout is not None:
                outs = output_tokens[:, j] if output_tokens is not None else np.array([])
                outs = outs[~np.isnan(outs)]
                logged = len(outs) > 0
                exp_out = float(np.mean(outs)) if logged else fallback_output_tokens
                cap_out = float(np.quantile(outs, cap_quantile)) if logged else FALLBACK_CAP_OUTPUT_TOKENS
                floor = PriceFloor(pin / 1e6, pout / 1e6, exp_out, max(cap_out, exp_out), m in assumed, logged)
            if ok.sum() >= 3 and np.ptp(t_all[ok]) > 0:
                a, b = np.polyfit(t_all[ok], c[ok], 1)
                if a < 0:
                    a, b = 0.0, float(np.mean(c[ok]))
                if b < 0:
                    a, b = float(np.sum(c[ok]) / max(np.sum(t_all[ok]), 1.0)), 0.0
            elif ok.any():
                a, b = 0.0, float(np.mean(c[ok]))
            elif floor is not None:
                a, b = 0.0, 0.0
            else:
                raise ValueError(f"model '{m}': no logged costs and no catalog prices to estimate them")
            per_token.append(float(a))
            fixed.append(float(b))
            floors.append(floor if price_floor or not ok.any() else None)
        return cls(models=models, per_token=tuple(per_token), fixed=tuple(fixed), floors=tuple(floors))

    def unknown_price(self, model: str) -> str | None:
        """What a decision should say about ``model``'s price when the catalog did not know it."""
        if not self.floors:
            return None
        f = self.floors[self.models.index(model)]
        if f is None:
            return "price unknown: expected cost from logged costs only"
        if f.price_assumed:
            return (
                f"price unknown: assumed the highest known (${f.input_per_token * 1e6:g}/M input, "
                f"${f.output_per_token * 1e6:g}/M output)"
            )
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "models": list(self.models),
            "per_token": list(self.per_token),
            "fixed": list(self.fixed),
            "floors": [None if f is None else f.__dict__ for f in self.floors],
        }

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> LinearCostModel:
        floors = tuple(None if f is None else PriceFloor(**f) for f in d.get("floors", []))
        return cls(models=tuple(d["models"]), per_token=tuple(d["per_token"]), fixed=tuple(d["fixed"]), floors=floors)
