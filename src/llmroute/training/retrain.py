"""Retrain the router from production: logged calls with feedback, merged with benchmark logs.

:func:`retrain_from_production` reads the decision log at a SQLAlchemy URL (``--from-production``),
optionally only decisions made in ``[since, until)``, and turns every decision with an outcome and
feedback into a training row (:mod:`llmroute.data.decision_log.benchmark_rows`: the model whose answer
was returned, the feedback as its quality, the realised cost). Everything read is accounted for:
decisions read, with feedback, used, and skipped per reason.

Production rows are a *partial* matrix: one model per prompt (a few more under a cascade). The
quality model trains on pooled (prompt, model) rows, so a partial row teaches it about the one model
it observed and nothing is imputed; the neighbour features fill unknown outcomes with the model's
overall mean. Benchmark logs (``--benchmark-logs``) give complete rows for every model.

Merge policy: **both are kept.** A production row is its own prompt (its id is the decision id), so
a prompt seen in the benchmark and again in production contributes both observations: production
feedback is newer and about the traffic that matters, the benchmark row about every model; neither
is thrown away. Without benchmark logs the new router knows only the models production served.

The new router is trained like ``llmroute train`` (:func:`llmroute.training.train.train_router`), logged
to MLflow, registered, aliased ``challenger``, and its run and version carry the data lineage: the log
URL (password masked), the window, the counts, a content fingerprint of the production rows, and the
path and fingerprint of every benchmark log (``data/lineage.json`` in the run, ``lineage.*`` tags).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmroute.artifacts.registry import registry_client
from llmroute.config import Settings
from llmroute.data.decision_log.benchmark_rows import benchmark_rows
from llmroute.data.decision_log.opening import open_decision_log
from llmroute.data.decision_log.store import DecisionLogStore, mask_url
from llmroute.data.importers import read_logs, write_logs
from llmroute.data.schema import ImportReport
from llmroute.router.router import Router
from llmroute.training.tracking import data_fingerprint as content_fingerprint, log_training_run
from llmroute.training.train import TrainConfig, data_fingerprint, train_router

MERGE_POLICY = (
    "both kept: production rows are their own prompts (prompt_id = decision id) next to every benchmark row"
)


@dataclass(frozen=True)
class ProductionRows:
    """Training rows from the log, and how every decision read was accounted for."""

    rows: pd.DataFrame
    report: ImportReport
    after_until: int

    @property
    def with_feedback(self) -> int:
        return self.report.rows_read - self.report.skipped.get("no feedback (quality unknown)", 0)

    def counts(self) -> dict[str, Any]:
        return {
            "decisions_read": self.report.rows_read,
            "decisions_with_feedback": self.with_feedback,
            "rows_used": self.report.rows_kept,
            "skipped": dict(self.report.skipped),
            "decisions_after_until_not_read": self.after_until,
            "models": {str(k): int(v) for k, v in self.rows["model"].value_counts().sort_index().items()},
        }

    def lines(self) -> list[str]:
        out = [f"decisions read: {self.report.rows_read}", f"  with feedback: {self.with_feedback}",
               f"  used as training rows: {self.report.rows_kept}"]
        for reason, n in sorted(self.report.skipped.items(), key=lambda kv: -kv[1]):
            out.append(f"  skipped {n:>7}  {reason}")
        if self.after_until:
            out.append(f"  not read: {self.after_until} decisions made at or after --until")
        return out


def read_production_rows(
    store: DecisionLogStore, since: datetime | None = None, until: datetime | None = None, origin: str = "decision log"
) -> ProductionRows:
    """Benchmark-schema rows from the decisions made in ``[since, until)``."""
    rows, report = benchmark_rows(store.joined(since=since, until=until), origin)
    return ProductionRows(rows, report, store.count_decisions(since=until) if until is not None else 0)


def merge_training_rows(production: pd.DataFrame, benchmark: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Production rows and benchmark rows together (:data:`MERGE_POLICY`)."""
    frames = [f for f in (*benchmark, production) if len(f)]
    if not frames:
        raise ValueError("nothing to train on: no production row has feedback and no benchmark logs were given")
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class RetrainResult:
    router: Router
    folder: Path
    train_logs: Path
    production: ProductionRows
    lineage: dict[str, Any]
    run_id: str | None
    registered_version: str | None


def retrain_from_production(
    dsn: str,
    settings: Settings,
    config: TrainConfig,
    since: datetime | None = None,
    until: datetime | None = None,
    benchmark_logs: Sequence[Path] = (),
    track: bool = True,
    out_dir: Path | None = None,
    echo: Any = print,
) -> RetrainResult:
    """Read the log, merge, train, and (``track``) register the router as ``challenger`` with its lineage."""
    shown = mask_url(dsn)
    store = open_decision_log(dsn)
    try:
        production = read_production_rows(store, since, until, origin=shown)
    finally:
        store.close()
    echo(f"decision log {shown}" + (f" since {since.isoformat()}" if since else "")
         + (f" until {until.isoformat()}" if until else ""))
    for line in production.lines():
        echo(line)
    bench = [(Path(p), read_logs(p)) for p in benchmark_logs]
    for path, df in bench:
        echo(f"benchmark logs {path}: {len(df)} rows, {df['prompt_id'].nunique()} prompts")
    merged = merge_training_rows(production.rows, [df for _, df in bench])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    work = settings.home / "retrain" / stamp
    train_path = work / "train.parquet"
    write_logs(merged, train_path)
    echo(f"training rows: {len(merged)} ({len(production.rows)} from production, "
         f"{len(merged) - len(production.rows)} from benchmark logs); merge policy: {MERGE_POLICY}")
    router, folder = train_router(train_path, settings, config, out_dir=out_dir)

    lineage: dict[str, Any] = {
        "source": "production",
        "decision_log": shown,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "counts": production.counts(),
        "production_rows": content_fingerprint(production.rows) if len(production.rows) else None,
        "benchmark_logs": [
            {"path": str(p.resolve()), "file_sha256_16": data_fingerprint(p), "rows": len(df),
             "prompts": int(df["prompt_id"].nunique())}
            for p, df in bench
        ],
        "merge_policy": MERGE_POLICY,
        "train_logs": str(train_path.resolve()),
    }
    router = router.with_info(lineage=lineage)
    (folder / "lineage.json").write_text(json.dumps(lineage, indent=1, default=str))
    run_id = version = None
    if track:
        run_id, version, router = _track(router, folder, train_path, settings, lineage)
        echo(f"registered as models:/{settings.registered_model}/{version} with alias 'challenger' "
             f"(MLflow run {run_id}; lineage in data/lineage.json)")
    return RetrainResult(router, folder, train_path, production, lineage, run_id, version)


def _track(router: Router, folder: Path, train_path: Path, settings: Settings,
           lineage: dict[str, Any]) -> tuple[str, str, Router]:
    tracked = log_training_run(router, folder, train_path, None, settings)
    run_id, version = tracked.run_id, tracked.version
    counts = lineage["counts"]
    tags = {
        "lineage.source": "production",
        "lineage.decision_log": lineage["decision_log"],
        "lineage.since": lineage["since"] or "",
        "lineage.until": lineage["until"] or "",
        "lineage.decisions_read": str(counts["decisions_read"]),
        "lineage.decisions_with_feedback": str(counts["decisions_with_feedback"]),
        "lineage.production_rows": str(counts["rows_used"]),
        "lineage.production_sha256": (lineage["production_rows"] or {}).get("content_sha256", ""),
        "lineage.benchmark_logs": ",".join(b["path"] for b in lineage["benchmark_logs"]),
    }
    with registry_client(settings, f"recording the lineage of version {version}") as (client, _):
        client.log_dict(run_id, lineage, "data/lineage.json")
        for k, v in tags.items():
            if not v:
                continue
            client.set_tag(run_id, k, v)
            client.set_model_version_tag(settings.registered_model, version, k, v)
        client.log_metric(run_id, "production_rows", float(counts["rows_used"]))
        client.log_metric(run_id, "production_decisions_read", float(counts["decisions_read"]))
    return run_id, version, tracked.router
