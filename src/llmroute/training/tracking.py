"""MLflow tracking of training runs: logging a trained router to the store
(:mod:`llmroute.artifacts.store` says where the store is and opens sessions on it).

:func:`log_training_run` records one run per trained router (parameters, validation and test metrics,
a fingerprint of the training data, the catalog, the evaluation report, library versions), logs the
router as a pyfunc model (see :mod:`llmroute.training.pyfunc`), registers it and points the
``challenger`` alias at the new version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from llmroute.artifacts.manifest import MANIFEST, write_manifest
from llmroute.artifacts.store import CHALLENGER, TrackingError, ensure_experiment, mlflow_session, resolve_tracking_uri
from llmroute.config import Settings
from llmroute.router.router import Router

MODEL_NAME_IN_RUN = "router"
LIBRARIES = (
    "llmroute",
    "lightgbm",
    "sentence-transformers",
    "torch",
    "transformers",
    "mlflow",
    "numpy",
    "pandas",
    "scikit-learn",
)
REPORT_FILES = ("report.json", "report.md", "cost_quality.png")
# measures copied onto the registered version as tags, so `llmroute models` needs no run look-ups
VERSION_METRICS = ("val_aiq", "val_log_loss", "val_quality_at_default_target", "test_aiq", "test_prompts")


# ---- what a run records ------------------------------------------------------------------------------
def data_fingerprint(logs: pd.DataFrame, path: Path | None = None) -> dict[str, Any]:
    """Content hash (independent of file layout and row order), row counts and date range of training logs."""
    cols = sorted(logs.columns)
    ordered = logs[cols].sort_values(["prompt_id", "model"], kind="stable").reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(ordered.astype("string"), index=False).to_numpy()
    fp: dict[str, Any] = {
        "content_sha256": hashlib.sha256(hashed.tobytes()).hexdigest(),
        "rows": len(logs),
        "prompts": int(logs["prompt_id"].nunique()),
    }
    for col in ("source", "task", "model"):
        fp[f"rows_per_{col}"] = {
            str(k): int(v) for k, v in logs[col].fillna("(none)").astype(str).value_counts().sort_index().items()
        }
    created = pd.to_datetime(logs["created_at"], utc=True) if "created_at" in logs else pd.Series([], dtype=object)
    created = created.dropna()
    fp["date_range"] = [created.min().isoformat(), created.max().isoformat()] if len(created) else None
    if path is not None:
        fp["file"] = str(Path(path).resolve())
    return fp


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def training_params(router: Router) -> dict[str, Any]:
    """Embedder, LightGBM settings, quality target and calibration of a trained router."""
    q = router.quality
    config = router.info.config or {}
    params: dict[str, Any] = {
        "embedder": router.embedder.spec,
        "embedder_fingerprint": router.embedder.fingerprint,
        "success_threshold": config.get("success_threshold", q.params.target),
        "default_target": str(router.default_target),
        "default_rule": router.default_rule,
        "seed": config.get("seed"),
        "calibration": getattr(q, "calibration_", None),
        "calibration.protocol": f"per model, fitted on {q.params.folds}-fold out-of-fold scores",
        "lightgbm.n_rounds": getattr(q, "n_rounds_", None),
        "models": ",".join(router.models),
    }
    params.update({f"lightgbm.{k}": v for k, v in asdict(q.params).items()})
    return params


def validation_metrics(router: Router) -> dict[str, float]:
    """Validation (out-of-fold) measures recorded at training time."""
    out: dict[str, float] = {}
    aiq = router.info.validation_aiq or {}
    for rule, v in aiq.items():
        out[f"val_aiq_{rule}"] = float(v)
    if router.default_rule in aiq:
        out["val_aiq"] = float(aiq[router.default_rule])
    cv = getattr(router.quality, "cv_log_loss_", None)
    if cv is not None:
        out["val_log_loss"] = float(cv)
    for kind, v in (getattr(router.quality, "cv_log_loss_by_calibration_", None) or {}).items():
        out[f"val_log_loss_{kind}"] = float(v)
    table = router.knob_tables.get(router.default_rule)
    if table is not None:
        knob, reachable = table.knob_for(router.default_target)
        i = table.knobs.index(knob)
        out["val_quality_at_default_target"] = float(table.quality[i])
        out["val_cost_per_1k_at_default_target"] = float(table.cost[i] * 1000)
        out["val_default_target_reachable"] = float(reachable)
    out["train_prompts"] = float(router.info.n_prompts or 0)
    return out


def test_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Test-split measures of the learned router from an evaluation report.json."""
    out: dict[str, float] = {}
    learned = report.get("routers", {}).get("learned", {})
    for key in ("aiq", "cost_at_95_ratio", "cost_at_parity_ratio", "quality_at_equal_cost", "apgr", "cpt50", "cpt80"):
        v = learned.get(key)
        if isinstance(v, (int, float)):
            out[f"test_{key}"] = float(v)
    for row in report.get("target_attainment", []):
        tag = row["target"].split("%")[0]
        out[f"test_target{tag}_share_of_best"] = float(row["realised_share_of_best"])
        out[f"test_target{tag}_met"] = float(row["met"])
        out[f"test_target{tag}_cost_per_1k"] = float(row["cost_per_1k"])
    if "prompts_scored" in report.get("data", {}):
        out["test_prompts"] = float(report["data"]["prompts_scored"])
    return out


def _next_version(client: Any, name: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return 1
    return max((int(v.version) for v in versions), default=0) + 1


def _stage_router(folder: Path, staging: Path, version: str, info: dict[str, Any]) -> Path:
    """Copy the router folder, write the registry version and provenance into router.json, add checksums."""
    copy = staging / MODEL_NAME_IN_RUN
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("manifest.json"))
    _rewrite_meta(copy, version, info)
    write_manifest(copy)
    return copy


def _rewrite_meta(folder: Path, version: str, info: dict[str, Any]) -> None:
    """Write the registry version and provenance into ``router.json``; a folder that has a manifest gets
    its checksums refreshed, so the rewritten folder still verifies."""
    meta_path = folder / "router.json"
    meta = json.loads(meta_path.read_text())
    old = meta.get("info") or {}
    meta["info"] = {**old, **info, "trained_as": old.get("trained_as", meta["version"])}
    meta["version"] = version
    meta_path.write_text(json.dumps(meta, indent=1, default=str))
    if (folder / MANIFEST).exists():
        write_manifest(folder)


@dataclass(frozen=True)
class TrackedRun:
    """What :func:`log_training_run` made: the MLflow run, the registered model version, and the
    router as registered (its version ``"<registered name>/<version>"``, its info carrying
    ``trained_as`` and ``mlflow_run_id``; the router passed in is unchanged)."""

    run_id: str
    version: str
    router: Router


def log_training_run(
    router: Router,
    router_folder: Path,
    logs: pd.DataFrame | Path | str,
    catalog_path: Path | None,
    settings: Settings,
    report_dir: Path | None = None,
) -> TrackedRun:
    """Log a trained router as an MLflow run, register it and alias the new version ``challenger``.

    ``logs`` are the training logs (a frame or a Parquet path); ``report_dir`` an evaluation output
    (report.json, report.md, cost_quality.png) on a test split, if one was run. On success the version
    in ``router_folder/router.json`` becomes ``"<registered name>/<version>"``, and the returned
    :class:`TrackedRun` holds the router under that version (``router`` itself is immutable and
    unchanged). Raises :class:`TrackingError` naming the store on failure.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from llmroute.data.catalog import bundled_catalog_path
    from llmroute.data.importers import read_logs
    from llmroute.training import pyfunc

    uri = resolve_tracking_uri(settings)
    name = settings.registered_model
    logs_path = Path(logs) if isinstance(logs, (str, Path)) else None
    frame = read_logs(logs_path) if logs_path is not None else logs
    fingerprint = data_fingerprint(frame, logs_path)
    catalog_file = Path(catalog_path) if catalog_path else bundled_catalog_path()
    report = json.loads((report_dir / "report.json").read_text()) if report_dir else None
    report_files = [report_dir / f for f in REPORT_FILES if (report_dir / f).exists()] if report_dir else []
    try:
        with mlflow_session(uri):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp_id = ensure_experiment(uri)
            with mlflow.start_run(experiment_id=exp_id, run_name=router.version) as run:
                run_id = run.info.run_id
                versions = library_versions()
                mlflow.log_params({k: v for k, v in training_params(router).items() if v is not None})
                mlflow.log_metrics(validation_metrics(router))
                if report is not None:
                    mlflow.log_metrics(test_metrics(report))
                for f in report_files:
                    mlflow.log_artifact(str(f), "evaluation")
                mlflow.log_dict(fingerprint, "data/fingerprint.json")
                mlflow.log_artifact(str(catalog_file), "catalog")
                mlflow.log_dict(versions, "environment/library_versions.json")
                mlflow.set_tags(
                    {
                        "data.content_sha256": fingerprint["content_sha256"],
                        "data.rows": fingerprint["rows"],
                        "data.prompts": fingerprint["prompts"],
                        "data.file": fingerprint.get("file", ""),
                        "router.trained_as": router.version,
                        "embedder": router.embedder.spec,
                        "embedder.fingerprint": router.embedder.fingerprint,
                        **{f"lib.{k}": v or "absent" for k, v in versions.items()},
                    }
                )
                expected = _next_version(client, name)
                registry_version = f"{name}/{expected}"
                with tempfile.TemporaryDirectory(prefix="llmroute-log-") as tmp:
                    staging = Path(tmp)
                    provenance = {"mlflow_run_id": run_id, "registered_model": name}
                    staged = _stage_router(router_folder, staging, registry_version, provenance)
                    code = staging / pyfunc.CODE_FILE
                    code.write_text(pyfunc.MODEL_CODE)
                    pip = [f"{lib}=={v}" for lib, v in versions.items() if v and lib != "transformers"]
                    info = mlflow.pyfunc.log_model(
                        name=MODEL_NAME_IN_RUN,
                        python_model=str(code),
                        artifacts={pyfunc.ARTIFACT_KEY: str(staged)},
                        signature=pyfunc.signature(),
                        input_example=pyfunc.input_example(),
                        pip_requirements=pip,
                        metadata={"router_version": registry_version, "data_content_sha256": fingerprint["content_sha256"]},
                    )
                mv = mlflow.register_model(info.model_uri, name)
                if str(mv.version) != str(expected):
                    # another run registered concurrently: decisions carry the predicted version, the
                    # registry loader corrects it from the registry (see llmroute.artifacts.loading)
                    client.set_model_version_tag(name, mv.version, "router_version_in_artifact", registry_version)
                    registry_version = f"{name}/{mv.version}"
                tags = {
                    "data.content_sha256": fingerprint["content_sha256"],
                    "data.prompts": str(fingerprint["prompts"]),
                    "data.rows": str(fingerprint["rows"]),
                    "router.trained_as": router.version,
                    "run_id": run_id,
                }
                measures = {**validation_metrics(router), **(test_metrics(report) if report is not None else {})}
                tags.update({f"metric.{k}": f"{measures[k]:.6g}" for k in VERSION_METRICS if k in measures})
                for k, v in tags.items():
                    client.set_model_version_tag(name, mv.version, k, v)
                client.set_registered_model_alias(name, CHALLENGER, mv.version)
                mlflow.set_tag("registered_version", f"{name}/{mv.version}")
    except MlflowException as exc:
        raise TrackingError(f"MLflow tracking store {uri}: could not log the training run: {exc.message}") from exc
    _rewrite_meta(router_folder, registry_version, {"mlflow_run_id": run_id, "registered_model": name})
    registered = router.with_info(
        trained_as=router.info.trained_as or router.version, mlflow_run_id=run_id, registered_model=name
    ).with_version(registry_version)
    return TrackedRun(run_id, str(mv.version), registered)
