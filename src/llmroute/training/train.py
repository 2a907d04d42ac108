"""Train a router from benchmark logs: embed, fit the quality and cost models, calibrate, save."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from llmroute.artifacts.loading import LATEST
from llmroute.artifacts.manifest import write_manifest
from llmroute.config import Settings
from llmroute.data.answers import answer_matrix
from llmroute.data.catalog import Catalog, ModelSpec, load_merged_catalog
from llmroute.data.importers import read_logs
from llmroute.data.observed import ObservedLatency, observed_latencies, output_tokens_matrix
from llmroute.data.wide import WideLogs, to_wide
from llmroute.experiments.metrics import aiq
from llmroute.progress import Phases
from llmroute.router.cascade_policy import OperatingPoints
from llmroute.router.cost import LinearCostModel
from llmroute.router.decision import QualityTarget
from llmroute.router.decision_rules import rule_names
from llmroute.router.embedder import Embedder, EmbeddingCache, load_embedder
from llmroute.router.features import embed_and_featurize
from llmroute.router.knobs import KnobTable, build_knob_table
from llmroute.router.quality_model import QualityModel, QualityModelParams
from llmroute.router.router import Router
from llmroute.router.router_info import RouterInfo
from llmroute.training.cascade_fit import ChainScores, fit_operating_points
from llmroute.training.scorer import SCORER_DIR, ResponseScorer, ScorerParams, describe_scorer, train_scorer
from llmroute.training.scorer_rows import text_keys


@dataclass(frozen=True)
class TrainConfig:
    """What `llmroute train` can be told."""

    embedder: str
    success_threshold: float = 0.5
    default_target: str = "95%"
    seed: int = 0
    with_scorer: bool = True
    dask: str | None = None  # "local:N" or a scheduler address: train on a Dask cluster (training.dask_backend)


@dataclass(frozen=True)
class Embedded:
    """Prompts of a log with their focus-text embeddings and text features."""

    logs: WideLogs
    embeddings: np.ndarray
    features: np.ndarray


def embed_logs(logs: WideLogs, embedder_spec: str, settings: Settings) -> tuple[Embedded, Embedder]:
    """Embed a log's prompts through the on-disk cache (retraining never re-embeds)."""
    settings.ensure_home()
    embedder = load_embedder(embedder_spec, settings.embedders_dir)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    emb, feats = embed_and_featurize(logs.prompts, logs.input_tokens, embedder, cache)
    return Embedded(logs, emb, feats), embedder


def data_fingerprint(path: Path) -> str:
    """sha256 (16 hex digits) of a log file, or of a folder of Parquet files (each file's relative path
    and bytes, in name order: a dataset ``--dask`` reads one partition per file)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f"{f.relative_to(path).as_posix()}\0".encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


MIN_CALIBRATION_PROMPTS = 50


def calibration_rows(logs: WideLogs) -> np.ndarray:
    """Rows the knob tables are built on: prompts with every outcome and cost known, when there are at
    least :data:`MIN_CALIBRATION_PROMPTS` of them; otherwise every row (partial logs only).

    A partial row's known outcome is the model the logging router chose (plus exploration), so the
    realised quality of a knob measured on partial rows is a selection-biased sample.
    """
    ok = ~np.isnan(logs.quality).any(axis=1) & ~np.isnan(logs.cost).any(axis=1)
    return np.nonzero(ok)[0] if ok.sum() >= MIN_CALIBRATION_PROMPTS else np.arange(len(logs))


def choose_rule(tables: dict[str, KnobTable], logs: WideLogs) -> tuple[str, dict[str, float]]:
    """The rule with the higher AIQ on the validation (out-of-fold) curves."""
    single_cost = np.nanmean(logs.cost, axis=0)
    single_q = np.nanmean(logs.quality, axis=0)
    lo, hi = float(np.nanmin(single_cost)), float(np.nanmax(single_cost))
    floor = float(single_q[int(np.nanargmin(single_cost))])
    scores = {r: aiq(np.asarray(t.cost), np.asarray(t.quality), lo, hi, q_floor=floor) for r, t in tables.items()}
    return max(scores, key=lambda r: scores[r]), scores


def train_router(
    logs_path: Path,
    settings: Settings,
    config: TrainConfig,
    catalog: Catalog | None = None,
    out_dir: Path | None = None,
) -> tuple[Router, Path]:
    """Train on the logs at ``logs_path`` and save the router; returns it and its folder."""
    if config.dask:
        from llmroute.training.dask_backend import DaskSpec, dask_client

        with dask_client(DaskSpec.parse(config.dask)) as client:
            return _train_router(logs_path, settings, config, catalog, out_dir, client)
    return _train_router(logs_path, settings, config, catalog, out_dir, None)


def _train_router(
    logs_path: Path, settings: Settings, config: TrainConfig, catalog: Catalog | None, out_dir: Path | None,
    client: object | None,
) -> tuple[Router, Path]:
    t0 = time.perf_counter()
    catalog = catalog or load_merged_catalog()
    weights: dict[str, float] = {"reading logs": 3, "embedding": 12, "quality model": 45, "cost model and knobs": 5, "saving": 2}
    if config.with_scorer:
        weights["answer scorer"] = 33
    with Phases("training", weights) as phases:
        return _train(logs_path, settings, config, catalog, out_dir, phases, t0, client)


def _train(
    logs_path: Path, settings: Settings, config: TrainConfig, catalog: Catalog, out_dir: Path | None,
    phases: Phases, t0: float, client: object | None,
) -> tuple[Router, Path]:
    backend = None
    answers = None  # on Dask: the answer scorer's rows, on the workers (training.dask_scorer.DaskAnswers)
    if client is None:
        with phases.phase("reading logs"):
            df = read_logs(logs_path)
            logs = to_wide(df)
        print(f"training on {len(logs)} prompts x {len(logs.models)} models from {logs_path}")
        with phases.phase("embedding"):
            emb, embedder = embed_logs(logs, config.embedder, settings)
    else:
        from llmroute.training.dask_backend import DaskBackend, embed_on_dask

        with phases.phase("reading logs"):
            settings.ensure_home()
            embedder = load_embedder(config.embedder, settings.embedders_dir)  # built once, before the workers need it
        with phases.phase("embedding"):
            on_dask = embed_on_dask(client, logs_path, config.embedder, settings.embedders_dir,
                                    settings.cache_dir / "embeddings.sqlite", with_answers=config.with_scorer,
                                    threshold=config.success_threshold)
        logs = on_dask.logs
        df = on_dask.calls  # the logged calls, without their answers (those stay on the workers)
        if on_dask.answers:
            from llmroute.training.dask_scorer import DaskAnswers

            answers = DaskAnswers(on_dask.answers, config.embedder, str(settings.embedders_dir),
                                  str(settings.cache_dir / "embeddings.sqlite"))
        emb = Embedded(logs, on_dask.embeddings, on_dask.features)
        print(f"training on {len(logs)} prompts x {len(logs.models)} models from {logs_path} (on Dask)")
        backend = DaskBackend(client)
    tasks = np.asarray(logs.tasks, dtype=object)
    params = QualityModelParams(target=config.success_threshold, seed=config.seed)
    with phases.phase("quality model") as report:
        quality = QualityModel(logs.models, params, backend).fit(emb.embeddings, emb.features, logs.quality, tasks,
                                                                 report)
    print(
        f"quality model: {quality.n_rounds_} boosting rounds (CV best {quality.cv_best_iterations_}), "
        f"calibration '{quality.calibration_}' (OOF log-loss by calibration: "
        + ", ".join(f"{k} {v:.4f}" for k, v in quality.cv_log_loss_by_calibration_.items())
        + ")"
    )
    with phases.phase("cost model and knobs"):
        prices = {m: _prices(catalog, m) for m in logs.models}
        cost_model = LinearCostModel.fit(
            logs.models, logs.input_tokens, logs.cost, prices,
            output_tokens=output_tokens_matrix(df, logs.prompt_ids, logs.models),
        )
        exp_cost = cost_model.predict(logs.input_tokens)
        rows = calibration_rows(logs)
        if len(rows) < len(logs):
            print(f"knob tables and rule choice on the {len(rows)} prompts with every model's outcome known "
                  f"({len(logs) - len(rows)} partial prompts, e.g. production rows, left out: their known outcome is "
                  "the one the logging router chose, a biased sample)")
        cal = logs.subset(rows)
        tables = {
            rule: build_knob_table(rule, cal.models, quality.oof_probs_[rows], exp_cost[rows], cal.quality, cal.cost)
            for rule in rule_names()
        }
        default_rule, rule_aiq = choose_rule(tables, cal)
    print("validation (out-of-fold) AIQ by rule: " + ", ".join(f"{r} {v:.4f}" for r, v in rule_aiq.items()))
    fingerprint = data_fingerprint(logs_path)
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{fingerprint[:8]}"
    latencies = observed_latencies(df)
    specs = specs_with_observed_latency(
        {m: catalog.get(m) for m in logs.models}, latencies
    )
    learned = sorted(m for m in logs.models if m in latencies and specs[m] is not None and (
        m not in catalog or catalog[m].typical_latency_ms is None))
    if learned:
        print(f"typical latency learned from latency_ms in the logs (median) for {len(learned)} models "
              "without one in the catalog")
    router = Router(
        models=logs.models,
        specs=specs,
        embedder=embedder,
        quality=quality,
        cost_model=cost_model,
        knob_tables=tables,
        default_rule=default_rule,
        default_target=QualityTarget.parse(config.default_target),
        version=version,
        info=RouterInfo(
            train_logs=str(logs_path.resolve()),
            train_logs_sha256_16=fingerprint,
            n_prompts=len(logs),
            n_outcomes=int((~np.isnan(logs.quality)).sum()),
            validation_aiq=rule_aiq,
            config=asdict(config),
            cost_is_estimated=logs.cost_is_estimated,
            tasks=tuple(sorted({t for t in logs.tasks if t})),
            catalog=catalog.source,
            observed_latency_ms={m: asdict(v) for m, v in latencies.items()},
            typical_latency_learned_for=tuple(learned),
        ),
    )
    settings.ensure_home()
    folder = out_dir or settings.routers_dir / version
    with phases.phase("saving"):
        router.save(folder)
    if answers is not None:
        has_answers = answers.has_rows(client)
    else:
        has_answers = "response" in df.columns and bool(df["response"].notna().any())
    if config.with_scorer and not has_answers:
        print("no answer scorer: the logs carry no responses (the cascade will judge answers by the router's "
              "probability alone)")
    elif not config.with_scorer:
        print("no answer scorer (--no-scorer): the cascade will judge answers by the router's probability alone")
    if config.with_scorer and has_answers:
        print("training the post-call answer scorer (prompt + answer -> P(meets target)) for the cascade")
        cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
        with phases.phase("answer scorer") as report:
            if answers is None:
                scorer = train_scorer(
                    df,
                    embedder,
                    folder / SCORER_DIR,
                    threshold=config.success_threshold,
                    seed=config.seed,
                    cache=cache,
                    report=report,
                    backend=backend,
                )
                answer_cells = answer_matrix(df, logs.prompt_ids, logs.models)
                has_answer = answer_cells != None  # noqa: E711 (elementwise)

                def scores(ok: np.ndarray) -> ChainScores:
                    return ChainScores(scorer, [logs.prompts[i] for i in ok], answer_cells[ok], logs.models, cache)
            else:
                from llmroute.training.dask_scorer import DaskChainScores, fit_scorer_on_dask, has_answer_matrix

                scorer, fold_of_key = fit_scorer_on_dask(
                    client, answers, ResponseScorer(embedder, ScorerParams(threshold=config.success_threshold,
                                                                            seed=config.seed)), report)
                keys = text_keys(list(logs.prompts)).tolist()
                scorer.prompt_fold_ = {q: fold_of_key[k] for q, k in zip(logs.prompts, keys) if k in fold_of_key}
                scorer.save(folder / SCORER_DIR)
                print(describe_scorer(scorer, folder / SCORER_DIR))
                has_answer = has_answer_matrix(answers.summarize(client), logs.prompt_ids, logs.models)

                def scores(ok: np.ndarray) -> ChainScores:
                    return DaskChainScores(client, answers, scorer, [logs.prompt_ids[i] for i in ok],
                                           [logs.prompts[i] for i in ok], logs.models, fold_of_key)
            report(0.95, "cascade operating points")
            points = cascade_operating_points(has_answer, logs, rows, quality.oof_probs_, exp_cost, scorer,
                                              default_rule, config.success_threshold, scores)
            if points is not None:
                scorer.operating_points = points
                scorer.save(folder / SCORER_DIR)
    write_manifest(folder)  # last: the sha256 of every file, so a reload can tell a damaged copy
    (settings.routers_dir / LATEST).write_text(str(folder.resolve()))
    print(f"saved router {version} to {folder} in {time.perf_counter() - t0:.1f} s")
    return router, folder


def cascade_operating_points(
    has_answer: np.ndarray, logs: WideLogs, rows: np.ndarray, oof_probs: np.ndarray, exp_cost: np.ndarray,
    scorer: ResponseScorer, rule: str, threshold: float, scores: Callable[[np.ndarray], ChainScores],
) -> OperatingPoints | None:
    """The cascade's operating points fitted out-of-fold on the calibration rows whose every model has a
    logged answer (``has_answer``, prompts x models; :mod:`llmroute.training.cascade_fit`); None (with
    the reason printed) when fewer than :data:`MIN_CALIBRATION_PROMPTS` such prompts exist.
    ``scores(ok)``: the out-of-fold answer scores of the prompts ``ok`` (in this process, or on the Dask
    workers that hold the answers)."""
    ok = rows[has_answer[rows].all(axis=1)] if len(rows) else rows
    ok = ok[~np.isnan(oof_probs[ok]).any(axis=1)]
    if len(ok) < MIN_CALIBRATION_PROMPTS:
        print(f"cascade operating points skipped: {len(ok)} prompts have every model's answer, quality and cost "
              f"(need {MIN_CALIBRATION_PROMPTS})")
        return None
    print(f"fitting the cascade's operating points out-of-fold on {len(ok)} prompts")
    return fit_operating_points(
        logs.models, [logs.prompts[i] for i in ok], None, oof_probs[ok], exp_cost[ok],
        logs.quality[ok], logs.cost[ok], scorer, rule, threshold, scores=scores(ok),
    )


def specs_with_observed_latency(
    specs: dict[str, ModelSpec | None], latencies: dict[str, ObservedLatency]
) -> dict[str, ModelSpec | None]:
    """The catalog's specs with ``typical_latency_ms`` filled from the logs' median latency where the
    catalog has none (a catalog value always wins). A model missing from the catalog stays None."""
    out: dict[str, ModelSpec | None] = {}
    for m, spec in specs.items():
        obs = latencies.get(m)
        if spec is not None and spec.typical_latency_ms is None and obs is not None:
            note = f"typical_latency_ms: median of {obs.calls} logged calls (p90 {obs.p90_ms:.0f} ms)"
            spec = replace(spec, typical_latency_ms=obs.median_ms, notes=f"{spec.notes}; {note}" if spec.notes else note)
        out[m] = spec
    return out


def _prices(catalog: Catalog, model: str) -> tuple[float | None, float | None]:
    if model not in catalog:
        return (None, None)
    spec = catalog[model]
    return (spec.input_price_per_1m, spec.output_price_per_1m)
