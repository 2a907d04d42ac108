"""LightGBM's native training parameters as :mod:`lightgbm.dask`'s scikit-learn style estimators take them
(used by the quality model's and the answer scorer's final fits on Dask)."""

from __future__ import annotations

from typing import Any


def sklearn_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (native names, with ``seed`` and ``verbose``) renamed for ``DaskLGBMClassifier``:
    ``seed`` -> ``random_state``, ``verbose`` -> ``verbosity``; every other key passed as it is."""
    p = dict(params)
    p["random_state"] = p.pop("seed")
    p["verbosity"] = p.pop("verbose")
    return p
