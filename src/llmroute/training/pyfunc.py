"""The router as an MLflow pyfunc model, logged as *code* (MLflow "models from code"), never pickled.

The logged model holds the router folder as an artifact (JSON, YAML, LightGBM text, NumPy arrays) and a
three-line code file, :data:`MODEL_CODE`, that builds :class:`RouterPyfunc`; MLflow executes that file
when the model is loaded, so no cloudpickle of a Python object is stored.

Input: a DataFrame with a ``prompt`` column and optional ``task`` (hint), ``target`` ("95%" or "0.85"),
``max_cost_usd``, ``max_latency_ms``, ``allowed_models`` and ``excluded_models`` (comma-separated).
Output: one row per prompt with ``model``, ``probability`` (of the chosen model meeting the target),
``expected_cost_usd``, ``reason``, ``rule``, ``knob``, ``cleared`` and ``router_version``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

with warnings.catch_warnings():
    # MLflow's own request types warn about their `Any` hints while mlflow.pyfunc is first imported
    warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning)
    from mlflow.pyfunc import PythonModel
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from llmroute.artifacts.loading import load_verified_router
from llmroute.config import load_settings
from llmroute.router.decision import Constraints, NoEligibleModelError, QualityTarget
from llmroute.router.router import Router

ARTIFACT_KEY = "router"
CODE_FILE = "llmroute_router_model.py"
MODEL_CODE = (
    '"""MLflow models-from-code entry point for an llmroute router (see llmroute.training.pyfunc)."""\n'
    "import mlflow.models\n\n"
    "from llmroute.training.pyfunc import RouterPyfunc\n\n"
    "mlflow.models.set_model(RouterPyfunc())\n"
)
OUTPUT_COLUMNS = (
    "model",
    "probability",
    "expected_cost_usd",
    "reason",
    "rule",
    "knob",
    "cleared",
    "router_version",
)


def signature() -> ModelSignature:
    """The pyfunc signature (see module docstring)."""
    inputs = Schema(
        [
            ColSpec("string", "prompt"),
            ColSpec("string", "task", required=False),
            ColSpec("string", "target", required=False),
            ColSpec("double", "max_cost_usd", required=False),
            ColSpec("double", "max_latency_ms", required=False),
            ColSpec("string", "allowed_models", required=False),
            ColSpec("string", "excluded_models", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "model"),
            ColSpec("double", "probability"),
            ColSpec("double", "expected_cost_usd"),
            ColSpec("string", "reason"),
            ColSpec("string", "rule"),
            ColSpec("double", "knob"),
            ColSpec("boolean", "cleared"),
            ColSpec("string", "router_version"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": ["Write a Python function that returns the n-th Fibonacci number."],
            "task": ["mbpp"],
        }
    )


def _opt(row: dict[str, Any], key: str) -> Any:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(s.strip() for s in items if str(s).strip())
    return names or None


def decide_frame(router: Router, frame: pd.DataFrame) -> pd.DataFrame:
    """Route every row of ``frame`` with :meth:`Router.route` (see module docstring for the columns)."""
    if "prompt" not in frame.columns:
        raise ValueError(f"the input needs a 'prompt' column; got columns {list(frame.columns)}")
    out = []
    for row in frame.to_dict(orient="records"):
        constraints = Constraints(
            max_cost_usd=_opt(row, "max_cost_usd"),
            max_latency_ms=_opt(row, "max_latency_ms"),
            allowed_models=_names(_opt(row, "allowed_models")),
            excluded_models=_names(_opt(row, "excluded_models")) or (),
        )
        target = _opt(row, "target")
        try:
            d = router.route(
                str(row["prompt"]),
                constraints,
                QualityTarget.parse(str(target)) if target is not None else None,
                task=_opt(row, "task"),
            )
        except NoEligibleModelError as exc:
            out.append(dict.fromkeys(OUTPUT_COLUMNS) | {"reason": str(exc), "router_version": router.version})
            continue
        chosen = next(c for c in d.candidates if c.model == d.model)
        out.append(
            {
                "model": d.model,
                "probability": chosen.probability,
                "expected_cost_usd": chosen.expected_cost_usd,
                "reason": d.reason,
                "rule": d.rule,
                "knob": d.knob,
                "cleared": d.cleared,
                "router_version": d.router_version,
            }
        )
    return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))


class RouterPyfunc(PythonModel):
    """Loads the router folder artifact (checksums and embedder fingerprint checked) and routes rows."""

    def __init__(self) -> None:
        self.router: Router | None = None

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        settings = load_settings()
        self.router = load_verified_router(folder, settings.embedders_dir, f"MLflow model artifact {folder}")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.router is None:
            raise RuntimeError("the router is not loaded (load_context was not called)")
        return decide_frame(self.router, pd.DataFrame(model_input))
