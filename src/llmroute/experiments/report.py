"""Run the offline evaluation and write report.json, report.md and the cost-quality plot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmroute.data.answers import answer_matrix, value_matrix
from llmroute.data.importers import read_logs
from llmroute.data.wide import WideLogs, to_wide
from llmroute.experiments.cascade_eval import CascadeInputs, evaluate_cascades
from llmroute.experiments.evaluate import (
    TARGETS,
    Curve,
    EvalInputs,
    _pair,
    build_curves,
    per_task,
    summarise,
    target_attainment,
)
from llmroute.experiments.plots import plot_cost_quality
from llmroute.progress import Phases
from llmroute.router.answer_scorer import ResponseScorer
from llmroute.router.baselines import SeedRules
from llmroute.router.embedder import EmbeddingCache
from llmroute.router.features import embed_and_featurize
from llmroute.router.router import Router
from llmroute.router.text import focus_text

HEADLINE = ("learned", "learned_task_hint", "knn", "per_task_static", "cheapest_adequate", "cascade", "fixed_chain")
CASCADE_ROWS = ("cascade", "fixed_chain", "cascade_perfect_scorer")


def cascade_rows(
    router: Router, scorer: ResponseScorer | None, test: WideLogs, test_df: pd.DataFrame, probs: np.ndarray,
    cache: EmbeddingCache, threshold: float, curves: dict[str, Curve], skipped: dict[str, str],
) -> dict[str, Any] | None:
    """Add the cascade rows to ``curves`` and return the report's ``cascade`` section; or put the one-line
    reason they cannot be computed in ``skipped`` and return None."""
    reason = None
    answers = answer_matrix(test_df, test.prompt_ids, test.models)
    missing = int(sum(any(a is None for a in row) for row in answers))
    if scorer is None:
        reason = "the router has no answer scorer (train on logs with responses, without --no-scorer)"
    elif scorer.operating_points is None or not scorer.operating_points.cascade:
        reason = "the router's scorer has no cascade operating points (retrain with this version of llmroute)"
    elif missing:
        reason = (f"{missing} of {len(test)} scored test prompts lack a logged response of some model: "
                  "the cascade cannot be replayed")
    if reason is not None:
        for name in CASCADE_ROWS:
            skipped[name] = reason
        return None
    assert scorer is not None and scorer.operating_points is not None
    single_q = test.quality.mean(axis=0)
    best = int(np.argmax(single_q))
    inp = CascadeInputs(
        test.models, test.prompts, test.tasks, answers, test.quality, test.cost,
        value_matrix(test_df, test.prompt_ids, test.models, "latency_ms"), probs,
        router.cost_model.predict(test.input_tokens), threshold,
    )
    rows, section = evaluate_cascades(
        inp, scorer, scorer.operating_points, cache, TARGETS, float(single_q[best]), float(test.cost[:, best].mean())
    )
    for row in rows:
        r = row.replayed
        curves[row.name] = Curve(r.delivered, tuple(float(k) for k in range(len(row.points))), "router",
                                 outcome=(r.quality, r.cost))
    return section


def run_evaluation(
    router: Router,
    test_path: Path,
    report_dir: Path,
    cache_path: Path,
    train_path: Path | None = None,
    rules_path: Path | None = None,
    n_boot: int = 1000,
    scorer: ResponseScorer | None = None,
) -> dict[str, Any]:
    """Evaluate ``router`` and its baselines on ``test_path``; baselines learn from ``train_path``
    (default: the logs the router was trained on). With the router's answer ``scorer`` and the operating
    points fitted with it, the cascade is replayed too (:mod:`llmroute.experiments.cascade_eval`);
    otherwise the cascade rows are skipped with the reason in ``skipped``."""
    weights: dict[str, float] = {"reading logs": 5, "embedding": 15, "routers and baselines": 35, "cascade replay": 10,
               "bootstrap intervals": 30, "report and plot": 5}
    with Phases("evaluation", weights) as phases:
        return _evaluate(router, test_path, report_dir, cache_path, train_path, rules_path, n_boot, scorer, phases)


def _evaluate(
    router: Router, test_path: Path, report_dir: Path, cache_path: Path, train_path: Path | None,
    rules_path: Path | None, n_boot: int, scorer: ResponseScorer | None, phases: Phases,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    phases.start("reading logs")
    if train_path is None and router.info.train_logs is None:
        raise ValueError(f"router {router.version} does not record its training logs (info.train_logs): pass them")
    train_path = train_path or Path(str(router.info.train_logs))
    threshold = router.info.success_threshold
    threshold = float(router.quality.params.target if threshold is None else threshold)
    train = to_wide(read_logs(train_path)).restrict(router.models)
    test_df = read_logs(test_path)
    test_all = to_wide(test_df).restrict(router.models)
    test, excluded = test_all.complete()
    if len(test) == 0:
        logged = set(to_wide(test_df).models)
        missing = [m for m in router.models if m not in logged]
        detail = f" (not in these logs: {', '.join(missing)})" if missing else ""
        raise ValueError(f"{test_path}: no prompt has a known outcome for every model of the router{detail}")
    phases.start("embedding")
    cache = EmbeddingCache(cache_path)
    emb_train, feats_train = embed_and_featurize(train.prompts, train.input_tokens, router.embedder, cache)
    emb_test = cache.encode(router.embedder, [focus_text(p) for p in test.prompts])
    prepared = router.prepare(list(test.prompts), embeddings=emb_test)
    phases.start("routers and baselines")
    inp = EvalInputs(router, train, emb_train, feats_train, test, prepared, excluded, threshold)
    skipped: dict[str, str] = {}
    curves = build_curves(inp, SeedRules.load(rules_path), skipped=skipped)
    probs = curves["learned"].scores
    assert probs is not None
    phases.start("cascade replay")
    cascade = cascade_rows(router, scorer, test, test_df, probs, cache, threshold, curves, skipped)
    pair = _pair(np.nanmean(train.quality, axis=0), np.nanmean(train.cost, axis=0))
    phases.start("bootstrap intervals")
    summary = summarise(test, curves, router, pair, n_boot, threshold)
    phases.start("report and plot")
    report: dict[str, Any] = {
        "data": {
            "test_logs": str(test_path),
            "train_logs": str(train_path),
            "prompts_scored": len(test),
            "prompts_left_out_unknown_outcome": excluded,
            "models": list(router.models),
            "tasks": sorted({t for t in test.tasks if t}),
            "cost": "estimated from catalog prices x counted tokens"
            if test.cost_is_estimated
            else "measured (logged per call)",
            "success_threshold": threshold,
        },
        "router": {
            "version": router.version,
            "embedder": router.embedder.spec,
            "default_rule": router.default_rule,
            "validation_aiq_by_rule": None if router.info.validation_aiq is None else dict(router.info.validation_aiq),
        },
        **summary,
        "target_attainment": target_attainment(test, router, probs, threshold),
        "per_task": per_task(test, curves, HEADLINE),
        "cascade": cascade,
        "skipped": skipped,
        "seconds": None,
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(report, indent=1))
    plot_path = report_dir / "cost_quality.png"
    routers = report["routers"]
    shown = [n for n in routers if routers[n]["kind"] == "router"]
    plot_cost_quality(
        {n: tuple(np.asarray(routers[n]["points"]).T) for n in shown},
        {n: tuple(routers[n]["points"][0]) for n in routers if routers[n]["kind"] != "router"},
        plot_path,
        title=(
            f"{Path(test_path).parent.name}/{Path(test_path).name}: {len(test)} prompts, "
            f"{'estimated' if test.cost_is_estimated else 'measured'} cost"
        ),
        highlight="learned",
    )
    (report_dir / "report.md").write_text(render_markdown(report, plot_path.name))
    return report


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _ratio(entry: dict[str, Any], key: str) -> str:
    v = entry.get(key)
    ci = entry.get("ci95", {}).get(key)
    s = "never" if v is None else f"{v:.2f}×"
    if ci and ci.get("lo") is not None:
        s += f" [{ci['lo']:.2f}, {ci['hi']:.2f}{undefined_note(ci.get('undefined_share'))}]"
    elif ci and ci.get("undefined_share"):
        s += f" [{undefined_note(ci.get('undefined_share')).lstrip('; ')}]"
    return s


def undefined_note(share: float | None) -> str:
    """What a ratio's bracket adds when some bootstrap resamples never reach the level: the bracket is
    over the other resamples only, and says how many were left out (``; never in 38%``)."""
    if not share:
        return ""
    return f"; never in {share:.0%}"


def _ci(d: dict[str, Any] | None, spec: str = ".3f", signed: bool = False) -> str:
    if not d or d.get("diff", d.get("auc")) is None:
        return "—"
    v = d.get("diff", d.get("auc"))
    f = ("+" if signed else "") + spec
    return f"{v:{f}} [{d['lo']:{f}}, {d['hi']:{f}}]" if d.get("lo") is not None else f"{v:{f}}"


def _cascade_markdown(r: dict[str, Any]) -> list[str]:
    c = r.get("cascade")
    if not c:
        return []
    routers = r["routers"]
    lines = [
        "",
        "## Cascade (offline replay of the logged answers through the served cascade)",
        "",
        f"{c['prompts']} prompts. Operating points fitted out-of-fold on the training logs "
        f"({c['fitted_on'].get('validation_prompts')} prompts); the test split is only replayed. `cascade`: router + "
        "answer scorer; `fixed_chain`: FrugalGPT-style cheapest-first chain (scorer only); "
        "`cascade_perfect_scorer`: the router cascade with an oracle accepting exactly the answers meeting the "
        "target (the ceiling). Paired differences against the router alone (`learned`).",
        "",
        "| row | AIQ − learned | quality at best's cost | − learned | cost ratio at best's quality |",
        "|---|---|---|---|---|",
    ]
    for name in CASCADE_ROWS:
        e = routers.get(name)
        if e is None:
            continue
        qe = e.get("ci95", {}).get("quality_at_equal_cost")
        q = _fmt(e["quality_at_equal_cost"]) + (f" [{qe['lo']:.3f}, {qe['hi']:.3f}]" if qe and qe.get("lo") is not None else "")
        lines.append(
            f"| {name} | {_ci(e.get('aiq_minus_learned'), '.4f', True)} | {q} | "
            f"{_ci(e.get('quality_at_equal_cost_minus_learned'), '.3f', True)} | {_ratio(e, 'cost_at_parity_ratio')} |"
        )
    lines += [
        "",
        "Target attainment of the cascade (operating point chosen on validation):",
        "",
        "| target | realised quality | share of best | met | $ per 1,000 | cost ratio | escalation rate | "
        "attempts | wasted spend | false-accept rate | latency (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in c["target_attainment"]:
        lines.append(
            f"| {t['target']} | {t['realised_quality']:.3f} | {t['realised_share_of_best']:.3f} | "
            f"{'yes' if t['met'] else 'no'} | {t['cost_per_1k']:.3f} | {_fmt(t['cost_ratio'], '.2f')}× | "
            f"{t['escalation_rate']:.3f} | {t['mean_attempts']:.2f} | {t['wasted_spend_share']:.1%} | "
            f"{t['false_accept_rate']:.3f} | {_fmt(t['latency_ms'], '.0f')} |"
        )
    auc = c["scorer_auc"]
    lines += [
        "",
        f"Answer scorer, held-out AUC with 95% bootstrap intervals over prompts ({auc['bootstrap_resamples']} "
        "resamples): alone = every test answer scored without earlier answers; in the cascade = the attempts the "
        "cascade's operating points made, each scored with the earlier attempts' answers.",
        "",
        "| scope | alone | in the cascade |",
        "|---|---|---|",
        f"| all | {_ci(auc['alone']['all'])} | {_ci(auc['cascade_attempts']['all'])} |",
    ]
    for task in auc["alone"]["per_task"]:
        lines.append(
            f"| {task} | {_ci(auc['alone']['per_task'][task])} | "
            f"{_ci(auc['cascade_attempts']['per_task'].get(task))} |"
        )
    return lines


def render_markdown(r: dict[str, Any], plot_name: str) -> str:
    d = r["data"]
    lines = [
        f"# llmroute evaluation: {Path(d['test_logs']).name}",
        "",
        f"Router `{r['router']['version']}` (embedder `{r['router']['embedder']}`, default rule "
        f"`{r['router']['default_rule']}`, chosen on validation). Baselines fitted on `{Path(d['train_logs']).name}`.",
        f"{d['prompts_scored']} held-out prompts scored ({d['prompts_left_out_unknown_outcome']} left out: "
        f"some model's outcome unknown); {len(d['models'])} models; cost is {d['cost']}; "
        f"a call meets the target when quality ≥ {d['success_threshold']}.",
        f"Best single model: `{r['best_single_model']}`, quality {r['best_single_quality']:.3f} at "
        f"${r['best_single_cost_per_1k']:.2f} per 1,000 queries. AIQ integrates from "
        f"${r['aiq_cost_range_per_1k'][0]:.2f} to ${r['aiq_cost_range_per_1k'][1]:.2f} per 1,000 queries.",
        "",
        f"![cost-quality]({plot_name})",
        "",
        "## Routers",
        "",
        "Brackets: 95% bootstrap intervals over prompts. Ratios are the best single model's cost divided by the "
        "router's lowest cost reaching that quality (higher is better; 'never': not reached). A ratio's bracket "
        "is over the resamples in which the router reaches that quality at all; 'never in X%' says how many did not.",
        "",
        "| router | AIQ | AIQ minus per-task static (paired) | cost ratio at 95% of best | cost ratio at best's quality | quality at best's cost | APGR | CPT(50%) | CPT(80%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in r["routers"].items():
        if e["kind"] != "router":
            continue
        ci = e.get("ci95", {}).get("aiq")
        a = f"{e['aiq']:.4f}" + (f" [{ci['lo']:.4f}, {ci['hi']:.4f}]" if ci and ci.get("lo") is not None else "")
        dd = e.get("aiq_minus_per_task_static")
        diff = "—" if not dd or dd["lo"] is None else f"{dd['diff']:+.4f} [{dd['lo']:+.4f}, {dd['hi']:+.4f}]"
        lines.append(
            f"| {name} | {a} | {diff} | {_ratio(e, 'cost_at_95_ratio')} | {_ratio(e, 'cost_at_parity_ratio')} | "
            f"{_fmt(e['quality_at_equal_cost'])} | {_fmt(e.get('apgr'))} | {_fmt(e.get('cpt50'))} | {_fmt(e.get('cpt80'))} |"
        )
    lines += ["", "## Single models and oracle", "", "| model | quality | $ per 1,000 queries |", "|---|---|---|"]
    for name, e in r["routers"].items():
        if e["kind"] != "router":
            c, q = e["points"][0]
            lines.append(f"| {name} | {q:.3f} | {c * 1000:.3f} |")
    lines += [
        "",
        f"APGR/CPT compare `{r['pair']['weak']}` (weak) with `{r['pair']['strong']}` (strong).",
        "",
        "## Target attainment (learned router, knob calibrated on validation data)",
        "",
        "| target | realised quality | share of best | met | $ per 1,000 | cost ratio | false-cheap rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in r["target_attainment"]:
        lines.append(
            f"| {t['target']} | {t['realised_quality']:.3f} | {t['realised_share_of_best']:.3f} | "
            f"{'yes' if t['met'] else 'no'} | {t['cost_per_1k']:.3f} | {_fmt(t['cost_ratio'], '.2f')}× | "
            f"{t['false_cheap_rate']:.3f} |"
        )
    lines += _cascade_markdown(r)
    if r.get("skipped"):
        lines += ["", "## Skipped", ""]
        lines += [f"- `{name}`: {why}" for name, why in r["skipped"].items()]
    lines += ["", "## Per task (AIQ within the task)", ""]
    names = sorted({n for t in r["per_task"].values() for n in t["aiq"]})
    lines += ["| task | prompts | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for task, t in r["per_task"].items():
        lines.append(f"| {task} | {t['prompts']} | " + " | ".join(f"{t['aiq'].get(n, 0):.4f}" for n in names) + " |")
    lines += ["", f"Evaluation took {r['seconds']} s.", ""]
    return "\n".join(lines)
