"""What a router knows about how it was made: :class:`RouterInfo`, the typed ``info`` of a
:class:`~llmroute.router.router.Router` (stored as the ``info`` object of its ``router.json``).

Training fills the training fields; retraining adds ``lineage``; registering it in MLflow adds
``trained_as`` and ``mlflow_run_id``. Keys written by other versions of llmroute that this one does
not know are kept in ``extra`` and written back unchanged, so reading and saving a router never
loses any of its provenance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast


@dataclass(frozen=True)
class RouterInfo:
    """Provenance and validation figures of a trained router (see module docstring). ``None``
    (or an empty ``extra``) means the router's ``router.json`` does not have the field.

    :meth:`from_dict` / :meth:`to_dict` are the JSON edge: ``to_dict(from_dict(d)) == d`` for every
    dict whose known keys hold non-null values of the JSON types below (list fields come back as
    lists)."""

    train_logs: str | None = None  # path of the training logs (resolved)
    train_logs_sha256_16: str | None = None
    n_prompts: int | None = None
    n_outcomes: int | None = None
    validation_aiq: Mapping[str, float] | None = None  # out-of-fold AIQ by decision rule
    config: Mapping[str, Any] | None = None  # the TrainConfig, as a dict
    cost_is_estimated: bool | None = None
    tasks: tuple[str, ...] | None = None
    catalog: str | None = None  # where the catalog came from
    observed_latency_ms: Mapping[str, Any] | None = None
    typical_latency_learned_for: tuple[str, ...] | None = None
    lineage: Mapping[str, Any] | None = None  # retraining from production logs (training.retrain)
    trained_as: str | None = None  # the version training gave it, before the registry's
    mlflow_run_id: str | None = None
    registered_model: str | None = None  # the MLflow registered model it was registered under
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RouterInfo:
        """The info of a ``router.json``'s ``info`` object (None or {} for a router without one).
        Raises ValueError naming the field when a known field has the wrong JSON type."""
        raw = dict(raw or {})
        kw: dict[str, Any] = {}
        for name, kinds in _KINDS.items():
            if name not in raw or raw[name] is None:
                continue
            v = raw.pop(name)
            if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
                want = " or ".join(k.__name__ for k in kinds)
                raise ValueError(f"router info field {name!r}: expected {want}, got {type(v).__name__} {v!r}")
            kw[name] = tuple(cast("list[Any]", v)) if name in _TUPLES else v
        return cls(**kw, extra=raw)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored as ``info`` in ``router.json``: the fields that are set, in field
        order, then ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra" or v is None:
                continue
            out[f.name] = list(v) if f.name in _TUPLES else v
        out.update(self.extra)
        return out

    @property
    def success_threshold(self) -> float | None:
        """The quality a model's answer had to reach to count as meeting the target in training."""
        v = (self.config or {}).get("success_threshold")
        return None if v is None else float(v)


_KINDS: dict[str, tuple[type, ...]] = {
    "train_logs": (str,),
    "train_logs_sha256_16": (str,),
    "n_prompts": (int,),
    "n_outcomes": (int,),
    "validation_aiq": (dict,),
    "config": (dict,),
    "cost_is_estimated": (bool,),
    "tasks": (list, tuple),
    "catalog": (str,),
    "observed_latency_ms": (dict,),
    "typical_latency_learned_for": (list, tuple),
    "lineage": (dict,),
    "trained_as": (str,),
    "mlflow_run_id": (str,),
    "registered_model": (str,),
}
_TUPLES = {"tasks", "typical_latency_learned_for"}
