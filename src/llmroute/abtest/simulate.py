"""``llmroute ab simulate``: replay held-out benchmark logs through an experiment's arms, offline.

Every prompt of the logs (those whose every model has a known quality and cost) is a request of
its own synthetic unit ``sim<seed>-<i>``; it is assigned an arm by the same sticky hash as live
traffic (:mod:`llmroute.abtest.assignment`; the start/stop window is ignored) and routed by that
arm's policy with the prompt's benchmark task as the request's ``task`` hint (``task_hints=False``
routes without it). The outcome is what the logs recorded for the chosen model: its quality (used as
the feedback), its cost and latency; every call succeeds and nothing escalates (no cascade offline).
Guardrails run over the requests in order, as the service would enforce them. The result is the
same report as for live traffic, plus a *counterfactual* section: every arm routes *every* prompt,
and the paired bootstrap (:func:`llmroute.experiments.metrics.bootstrap_diff_ci`) gives each arm's
difference to the control on identical prompts, the lower-variance estimate a live test cannot have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmroute.abtest.arms import build_policy
from llmroute.abtest.assignment import arm_for_bucket, bucket
from llmroute.abtest.experiment import Experiment
from llmroute.abtest.guardrails import GuardrailMonitor
from llmroute.abtest.report import analyse
from llmroute.data.importers import read_logs
from llmroute.data.wide import to_wide
from llmroute.experiments.metrics import bootstrap_diff_ci
from llmroute.progress import bar
from llmroute.router.decision import RouteQuery

if TYPE_CHECKING:
    from llmroute.router.router import Router

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Simulation:
    report: dict[str, Any]
    observations: pd.DataFrame


def simulate(
    experiment: Experiment,
    logs_path: Path,
    routers: dict[str, Router],
    seed: int = 0,
    task_hints: bool = True,
    limit: int | None = None,
) -> Simulation:
    """Simulate ``experiment`` on the logs at ``logs_path`` (see module docstring). ``routers`` maps
    each router arm's ``router`` string to its loaded router; ``limit`` keeps the first N prompts."""
    long = read_logs(logs_path)
    wide, left_out = to_wide(long).complete()
    if limit is not None:
        wide = wide.subset(np.arange(min(limit, len(wide))))
    if len(wide) == 0:
        raise ValueError(f"{logs_path}: no prompt has a known quality and cost for every model")
    latency = _latency(long, wide.prompt_ids, wide.models)
    index = {m: j for j, m in enumerate(wide.models)}
    choice: dict[str, np.ndarray] = {}
    versions: dict[str, str] = {}
    shown = bar(len(experiment.arms) * len(wide), "ab simulate: routing", unit="prompt")
    for arm in experiment.arms:
        policy = build_policy(arm, routers, wide.models)
        picks = np.empty(len(wide), dtype=np.int64)
        shown.set_postfix_str(f"arm {arm.name}")
        for i, prompt in enumerate(wide.prompts):
            shown.update(1)
            d = policy.route(RouteQuery(prompt, task=wide.tasks[i] if task_hints else None))
            if d.model not in index:
                raise ValueError(f"arm {arm.name!r} chose {d.model!r}, which the logs do not have")
            picks[i] = index[d.model]
            versions[arm.name] = d.router_version
        choice[arm.name] = picks
    shown.close()

    rows = np.arange(len(wide))
    monitor = GuardrailMonitor(experiment)
    control = experiment.control.name
    records = []
    for i in range(len(rows)):
        assigned = arm_for_bucket(experiment, bucket(experiment.name, f"sim{seed}-{i}"))
        served = control if assigned in monitor.stopped else assigned
        j = choice[served][i]
        cost = float(wide.cost[i, j])
        monitor.observe_request(served, cost, True)
        records.append({
            "created_at": _EPOCH + timedelta(seconds=int(i)), "served": served, "assigned": assigned,
            "router_version": versions[served], "model": wide.models[j], "expected_cost_usd": cost,
            "cost_usd": cost, "ok": 1.0, "latency_ms": latency[i, j], "escalated": 0.0,
            "quality": float(wide.quality[i, j]),
        })
    obs = pd.DataFrame.from_records(records)
    source = {
        "kind": "simulation", "logs": str(logs_path), "prompts": len(wide), "prompts_left_out_incomplete": left_out,
        "seed": seed, "task_hints": task_hints, "cost_is_estimated": wide.cost_is_estimated,
        "outcomes": "recorded quality (as feedback), cost and latency of the chosen model; no cascade",
    }
    report = analyse(experiment, obs, source, seed)
    report["data"].update(first=None, last=None)  # the synthetic request times say nothing
    report["counterfactual"] = _counterfactual(experiment, wide.quality, wide.cost, choice, rows, seed)
    return Simulation(report, obs)


def _latency(long: pd.DataFrame, prompt_ids: tuple[str, ...], models: tuple[str, ...]) -> np.ndarray:
    out = np.full((len(prompt_ids), len(models)), np.nan)
    if "latency_ms" not in long:
        return out
    pos = {p: i for i, p in enumerate(prompt_ids)}
    col = {m: j for j, m in enumerate(models)}
    for p, m, v in zip(long["prompt_id"].astype(str), long["model"].astype(str),
                       pd.to_numeric(long["latency_ms"], errors="coerce")):
        if p in pos and m in col:
            out[pos[p], col[m]] = v
    return out


def _counterfactual(experiment: Experiment, quality: np.ndarray, cost: np.ndarray, choice: dict[str, np.ndarray],
                    rows: np.ndarray, seed: int) -> dict[str, Any]:
    """Every arm on every prompt; paired bootstrap differences to the control."""
    a = experiment.analysis
    control = experiment.control.name
    qc, cc = quality[rows, choice[control]], cost[rows, choice[control]]
    out: dict[str, Any] = {}
    for arm in experiment.arms:
        q, c = quality[rows, choice[arm.name]], cost[rows, choice[arm.name]]
        entry: dict[str, Any] = {
            "prompts": len(rows), "quality": float(q.mean()), "mean_cost_usd": float(c.mean()),
            "target_attainment": float((q >= experiment.success_threshold).mean()),
        }
        if arm.name != control:
            for key, stat in (("quality_diff", lambda cs, qs: float(qs[0])), ("cost_diff_usd", lambda cs, qs: float(cs[0]))):
                ci = bootstrap_diff_ci(q, c, qc, cc, stat, n_boot=a.n_boot, seed=seed, alpha=a.alpha)
                entry[key] = {"diff": ci.point, "lo": ci.lo, "hi": ci.hi}
        out[arm.name] = entry
    return out
