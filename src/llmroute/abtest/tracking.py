"""Log an A/B report to MLflow, next to the routers it compares.

One run per report in the same MLflow experiment as the training runs (``llmroute``), named
``ab:<experiment>:<kind>`` (kind: ``live`` or ``simulation``). It holds the report files as artifacts
(``ab/report.json``, ``report.md``, ``report.html``, the PNG plots), the headline numbers as metrics
(``<arm>.quality``, ``<arm>.mean_cost_usd``, ``<arm>.requests``, ..., and per treatment arm
``<arm>.quality_diff``, ``<arm>.quality_p``, ``<arm>.cost_diff``, ``<arm>.cost_p``), and tags naming
every arm's policy and router version (``ab.arm.<arm>.router_version``). Every registered router
version an arm used (``<name>/<version>``) gets a version tag ``ab.<experiment>.<kind>`` with the run id,
so the registry lists the experiments a version took part in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmroute.artifacts.store import TrackingError, ensure_experiment, mlflow_session, resolve_tracking_uri
from llmroute.config import Settings

_VERSION = re.compile(r"^(?P<name>[^/:]+)/(?P<version>\d+)$")


def _key(text: str) -> str:
    """MLflow keys allow letters, digits, '_', '-', '.', ' ', '/'."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def headline_metrics(report: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for arm, m in report["arms"].items():
        for k in ("requests", "feedback", "quality", "target_attainment", "mean_cost_usd", "mean_expected_cost_usd",
                  "error_rate", "escalation_rate", "latency_ms_mean", "cost_per_success_usd"):
            if isinstance(m.get(k), (int, float)):
                out[_key(f"{arm}.{k}")] = float(m[k])
    for arm, c in report["comparisons"].items():
        for measure, name in (("quality", "quality"), ("cost", "cost")):
            w = c[measure]["welch"]
            if w["diff"] is not None:
                out[_key(f"{arm}.{name}_diff")] = float(w["diff"])
            if w["p_value"] is not None:
                out[_key(f"{arm}.{name}_p")] = float(w["p_value"])
    out["enough_data"] = float(bool(report["enough_data"]))
    return out


def log_ab_run(report: dict[str, Any], files: list[Path], settings: Settings) -> str:
    """Record the report (see module docstring); returns the MLflow run id."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(settings)
    exp = report["experiment"]
    kind = "simulation" if report["data"].get("kind") == "simulation" else "live"
    tags = {"ab.experiment": exp["name"], "ab.kind": kind, "ab.control": exp["control"],
            "ab.enough_data": str(report["enough_data"]).lower()}
    versions: set[str] = set()
    for a in exp["arms"]:
        tags[_key(f"ab.arm.{a['name']}.policy")] = a["policy"]
        seen = report["arms"].get(a["name"], {}).get("router_versions", [])
        tags[_key(f"ab.arm.{a['name']}.router_version")] = ",".join(seen) or "(no requests)"
        versions.update(v for v in seen if _VERSION.match(v))
    try:
        with mlflow_session(uri):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            with mlflow.start_run(experiment_id=ensure_experiment(uri), run_name=f"ab:{exp['name']}:{kind}") as run:
                mlflow.set_tags(tags)
                mlflow.log_params({"ab.unit": exp["unit"], "ab.success_threshold": exp["success_threshold"],
                                   **{_key(f"ab.weight.{a['name']}"): a["weight"] for a in exp["arms"]}})
                mlflow.log_metrics(headline_metrics(report))
                for f in files:
                    mlflow.log_artifact(str(f), "ab")
                run_id = str(run.info.run_id)
            for v in sorted(versions):
                m = _VERSION.match(v)
                assert m is not None
                try:
                    client.set_model_version_tag(m["name"], m["version"], _key(f"ab.{exp['name']}.{kind}"), run_id)
                except MlflowException:
                    pass  # a version from another registry (or deleted): the run's tags still name it
    except MlflowException as exc:
        raise TrackingError(f"MLflow tracking store {uri}: could not log the A/B report: {exc.message}") from exc
    return run_id
