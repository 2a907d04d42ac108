"""Retraining from the decision log: counts, partial rows, lineage in MLflow, alias, and the off-policy gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmroute.data.decision_log import DecisionLogStore, mask_url
from llmroute.data.decision_log.opening import DecisionLogError, open_decision_log
from llmroute.training.retrain import MERGE_POLICY, read_production_rows, retrain_from_production
from llmroute.training.train import TrainConfig
from tests.offpolicy.conftest import (
    N_PROMPTS,
    NO_FEEDBACK,
    NO_OUTCOME,
    REDACTED,
    ProductionLog,
)

USED = N_PROMPTS - len(NO_OUTCOME) - len(NO_FEEDBACK) - len(REDACTED)


def test_production_rows_count_every_decision(production_log: ProductionLog) -> None:
    with DecisionLogStore(production_log.url, migrate=False) as store:
        rows = read_production_rows(store)
        late = read_production_rows(store, since=production_log.cutoff)
        early = read_production_rows(store, until=production_log.cutoff)
    c = rows.counts()
    assert c["decisions_read"] == N_PROMPTS
    assert c["decisions_with_feedback"] == N_PROMPTS - len(NO_OUTCOME) - len(NO_FEEDBACK)
    assert c["rows_used"] == USED == len(rows.rows)
    assert sum(c["skipped"].values()) + c["rows_used"] == c["decisions_read"]
    assert early.after_until == N_PROMPTS - 100 and early.report.rows_read == 100
    assert late.report.rows_read == N_PROMPTS - 100
    assert set(rows.rows["source"]) == {"decision_log"}
    # one observed model per production prompt: a partial matrix
    assert rows.rows.groupby("prompt_id")["model"].nunique().max() == 1


@pytest.mark.slow
def test_a_router_trains_on_production_rows_alone_partial_matrix(
    production_log: ProductionLog, tracked_settings, tmp_path: Path
) -> None:
    res = retrain_from_production(production_log.url, tracked_settings, TrainConfig(embedder="minilm", with_scorer=False),
                                  track=False, out_dir=tmp_path / "r", echo=lambda _: None)
    served = set(res.production.rows["model"])
    assert set(res.router.models) == served  # without benchmark logs it only knows what production served
    probs, _ = res.router.predict(res.router.prepare(production_log.prompts[:5]))
    assert probs.shape == (5, len(served)) and np.all((probs >= 0) & (probs <= 1))
    assert res.run_id is None
    assert json.loads((res.folder / "lineage.json").read_text())["counts"]["rows_used"] == USED


@pytest.mark.slow
def test_retrain_registers_the_challenger_with_lineage_and_the_offpolicy_gate_judges_it(
    production_log: ProductionLog, tracked_settings, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from llmroute.training.registry import OffPolicyGateOptions, promote
    from llmroute.training.tracking import log_training_run

    settings = tracked_settings
    trained = production_log.trained
    # the router that made the log is the champion
    import shutil

    champ_folder = tmp_path / "champion"
    shutil.copytree(trained.folder, champ_folder)
    from llmroute.router.router import Router

    champion = Router.load(champ_folder, trained.embedder)  # type: ignore[arg-type]
    log_training_run(champion, champ_folder, trained.train_path, None, settings)
    promote(settings, gate="offpolicy", offpolicy=OffPolicyGateOptions(production_log.url, n_boot=50),
            echo=lambda _: None)  # no champion yet: promoted

    dsn = production_log.url
    lines: list[str] = []
    res = retrain_from_production(dsn, settings, TrainConfig(embedder="minilm", with_scorer=False),
                                  until=production_log.cutoff, benchmark_logs=[trained.train_path],
                                  out_dir=tmp_path / "challenger", echo=lines.append)
    assert any("decisions read: 100" in line for line in lines)
    uri = settings.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    rm = client.get_registered_model(settings.registered_model)
    assert str(rm.aliases["challenger"]) == res.registered_version
    assert str(rm.aliases["champion"]) != res.registered_version
    lineage_path = client.download_artifacts(res.run_id, "data/lineage.json", str(tmp_path))
    lineage = json.loads(Path(lineage_path).read_text())
    assert lineage["decision_log"] == dsn
    assert lineage["until"] == production_log.cutoff.isoformat()
    assert lineage["counts"]["decisions_read"] == 100
    assert lineage["counts"]["rows_used"] == len(res.production.rows) > 0
    assert lineage["benchmark_logs"][0]["path"] == str(trained.train_path.resolve())
    assert lineage["merge_policy"] == MERGE_POLICY
    run = client.get_run(res.run_id)
    assert run.data.tags["lineage.source"] == "production"
    assert run.data.tags["lineage.production_sha256"] == lineage["production_rows"]["content_sha256"]
    mv = client.get_model_version(settings.registered_model, res.registered_version)
    assert mv.tags["lineage.production_rows"] == str(lineage["counts"]["rows_used"])

    # the off-policy gate on the later decisions (never trained on); min_matches above what 55 decisions hold
    printed: list[str] = []
    refused = promote(settings, gate="offpolicy", echo=printed.append,
                      offpolicy=OffPolicyGateOptions(dsn, since=production_log.cutoff, min_matches=10_000, n_boot=100))
    assert not refused.promoted
    assert "not enough evidence" in refused.message or "same model as the champion" in refused.message
    assert refused.offpolicy.decisions_used == N_PROMPTS - 100 - len(NO_OUTCOME) - len(NO_FEEDBACK) - len(REDACTED)
    assert any("doubly" in p or "DR" in p for p in printed)
    tags = client.get_model_version(settings.registered_model, res.registered_version).tags
    assert tags["promotion.gate"] == "offpolicy" and tags["promotion.decision"] == "refused"
    assert str(client.get_registered_model(settings.registered_model).aliases["challenger"]) == res.registered_version


def test_the_dsn_password_never_shows() -> None:
    assert mask_url("postgresql://alice:s3cret@db.example/prod") == "postgresql://alice:***@db.example/prod"
    assert "s3cret" not in mask_url("postgresql+psycopg://alice:s3cret@db:5432/prod")


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("not a url", "is not a database URL"),
        ("sqlite:////nonexistent/dir/decisions.sqlite", "no decision log at sqlite:////nonexistent"),
    ],
)
def test_bad_dsns_are_named(dsn: str, message: str) -> None:
    with pytest.raises(DecisionLogError, match=message):
        open_decision_log(dsn)


def test_an_unreachable_postgres_is_reported_without_its_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(DecisionLogError) as info:
        open_decision_log("postgresql+psycopg://alice:s3cret@127.0.0.1:1/prod?connect_timeout=2")
    assert "cannot read the decision log at postgresql+psycopg://alice:***@127.0.0.1:1/prod" in str(info.value)
    assert "s3cret" not in str(info.value)
