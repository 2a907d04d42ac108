"""The A/B analysis: per-arm measures from logged requests, and every arm against the control.

Input is a table of *observations*, one row per request of the experiment (:data:`COLUMNS`), built
either from the decision log (:func:`observations_from_log`) or by the offline simulation
(:mod:`llmroute.abtest.simulate`). :func:`analyse` turns it into a JSON-able report:

* per arm: requests (and how many a guardrail diverted to it), outcomes, feedback, mean realised
  cost (chat outcomes) and mean expected cost (the router's estimate at decision time), quality
  (mean feedback), target attainment (share of feedback >= ``success_threshold``), latency (mean and
  p95), escalation rate (share of outcomes with more than one cascade attempt), error rate (share of
  failed outcomes), cost per successful answer (cost of requests with an outcome and feedback / how
  many of them met the target);
* per treatment arm, the difference to the control with a 95% interval and p-value: Welch's t-test
  and an independent-arms bootstrap for quality, cost and latency; two-proportion z-tests for
  attainment, error and escalation rates;
* a power note (requests per arm needed to detect the experiment's ``quality_effect`` and
  ``cost_effect_relative`` at ``power``) and a plain verdict, "not enough data yet" when an arm has
  fewer than ``min_requests_per_arm`` requests or the quality comparison is under-powered;
* guardrail stops recomputed from the observations in time order (:func:`llmroute.abtest.guardrails.replay`).

Arms are analysed *as served*: a request a guardrail diverted to the control counts for the control.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from llmroute.abtest import stats
from llmroute.abtest.assignment import parse_arm_label
from llmroute.abtest.experiment import Experiment
from llmroute.abtest.guardrails import replay

COLUMNS = (
    "created_at", "served", "assigned", "router_version", "model", "expected_cost_usd", "cost_usd", "ok",
    "latency_ms", "escalated", "quality",
)
WORST_CASE_SD = 0.5  # the largest standard deviation a quality in [0, 1] can have


def observations_from_log(url: str, experiment: Experiment, since: datetime | None = None) -> pd.DataFrame:
    """The experiment's requests from the decision log at ``url`` (decisions whose ``arm`` is
    ``"<experiment>:..."``), joined with their outcome and latest feedback."""
    from llmroute.data.decision_log import DecisionLogStore

    frames = []
    with DecisionLogStore(url) as store:
        for batch in store.joined(since=since):
            df = batch.to_pandas()
            mine = df["arm"].fillna("").str.startswith(f"{experiment.name}:")
            if mine.any():
                frames.append(_observations(df[mine]))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    return pd.concat(frames, ignore_index=True).sort_values("created_at", kind="stable").reset_index(drop=True)


def _expected_cost(row: Any) -> float:
    for c in row.candidates if row.candidates is not None else ():
        if c["model"] == row.chosen_model:
            return float(c["expected_cost_usd"])
    return float("nan")


def _escalated(attempts: Any, has_outcome: bool) -> float:
    if not has_outcome or attempts is None:
        return float("nan")
    try:
        return float(len(json.loads(attempts)) > 1)
    except (TypeError, ValueError):
        return float("nan")


def _observations(df: pd.DataFrame) -> pd.DataFrame:
    labels = [parse_arm_label(a) for a in df["arm"]]
    has_outcome = df["outcome_model"].notna().to_numpy()
    return pd.DataFrame({
        "created_at": df["created_at"].to_numpy(),
        "served": [lab[1] if lab else None for lab in labels],
        "assigned": [lab[2] if lab else None for lab in labels],
        "router_version": df["router_version"].to_numpy(),
        "model": df["outcome_model"].where(df["outcome_model"].notna(), df["chosen_model"]).to_numpy(),
        "expected_cost_usd": [_expected_cost(r) for r in df.itertuples(index=False)],
        "cost_usd": np.where(has_outcome, df["cost_usd"].astype(float).fillna(0.0), np.nan),
        "ok": np.where(has_outcome, df["ok"].astype(float), np.nan),
        "latency_ms": df["latency_ms"].astype(float).to_numpy(),
        "escalated": [_escalated(a, h) for a, h in zip(df["attempts"], has_outcome)],
        "quality": df["quality"].astype(float).to_numpy(),
    })


# ---- per arm ---------------------------------------------------------------------------------------------


def _mean(x: pd.Series) -> float | None:
    x = x.dropna()
    return float(x.mean()) if len(x) else None


def _sd(x: pd.Series) -> float | None:
    x = x.dropna()
    return float(x.std(ddof=1)) if len(x) >= 2 else None


def arm_summary(obs: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """The measures of one arm's requests (see module docstring)."""
    q = obs["quality"].dropna()
    outcomes = obs["ok"].notna()
    both = outcomes & obs["quality"].notna()
    successes = int((obs.loc[both, "quality"] >= threshold).sum())
    cost_both = float(obs.loc[both, "cost_usd"].sum())
    latency = obs["latency_ms"].dropna()
    models = obs["model"].value_counts(normalize=True).head(5)
    return {
        "requests": len(obs),
        "diverted_in": int((obs["assigned"] != obs["served"]).sum()),
        "outcomes": int(outcomes.sum()),
        "feedback": len(q),
        "mean_cost_usd": _mean(obs["cost_usd"]),
        "mean_expected_cost_usd": _mean(obs["expected_cost_usd"]),
        "quality": _mean(obs["quality"]),
        "quality_sd": _sd(obs["quality"]),
        "target_attainment": float((q >= threshold).mean()) if len(q) else None,
        "latency_ms_mean": float(latency.mean()) if len(latency) else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if len(latency) else None,
        "escalation_rate": _mean(obs["escalated"]),
        "error_rate": float(1.0 - obs.loc[outcomes, "ok"].mean()) if outcomes.any() else None,
        "cost_per_success_usd": cost_both / successes if successes else None,
        "router_versions": sorted({str(v) for v in obs["router_version"].dropna()}),
        "top_models": {str(k): float(v) for k, v in models.items()},
    }


# ---- against the control ---------------------------------------------------------------------------------


def _cost_column(t: pd.DataFrame, c: pd.DataFrame) -> str:
    """Realised cost when both arms have outcomes, else the expected cost at decision time."""
    return "cost_usd" if t["cost_usd"].notna().any() and c["cost_usd"].notna().any() else "expected_cost_usd"


def _proportion(t: pd.Series, c: pd.Series, alpha: float) -> dict[str, object]:
    t, c = t.dropna(), c.dropna()
    return stats.two_proportions(int(t.sum()), len(t), int(c.sum()), len(c), alpha).to_dict()


def compare(t: pd.DataFrame, c: pd.DataFrame, experiment: Experiment, seed: int = 0) -> dict[str, Any]:
    """Treatment ``t`` minus control ``c`` on every measure, with the power note."""
    a = experiment.analysis
    thr = experiment.success_threshold
    cost_col = _cost_column(t, c)
    out: dict[str, Any] = {
        "quality": {
            "welch": stats.welch(t["quality"], c["quality"], a.alpha).to_dict(),
            "bootstrap": stats.bootstrap_mean_diff(t["quality"], c["quality"], a.n_boot, seed, a.alpha).to_dict(),
        },
        "cost": {
            "measure": "realised cost" if cost_col == "cost_usd" else "expected cost (no outcomes logged)",
            "welch": stats.welch(t[cost_col], c[cost_col], a.alpha).to_dict(),
            "bootstrap": stats.bootstrap_mean_diff(t[cost_col], c[cost_col], a.n_boot, seed + 1, a.alpha).to_dict(),
        },
        "latency_ms": {"welch": stats.welch(t["latency_ms"], c["latency_ms"], a.alpha).to_dict()},
        "target_attainment": _proportion(t["quality"].dropna() >= thr, c["quality"].dropna() >= thr, a.alpha),
        "error_rate": _proportion(1.0 - t["ok"], 1.0 - c["ok"], a.alpha),
        "escalation_rate": _proportion(t["escalated"], c["escalated"], a.alpha),
    }
    out["power"] = power_note(t, c, experiment, cost_col)
    return out


def power_note(t: pd.DataFrame, c: pd.DataFrame, experiment: Experiment, cost_col: str) -> dict[str, Any]:
    """Requests per arm needed for the experiment's effects, and how many more each arm needs."""
    a = experiment.analysis
    qt, qc = t["quality"].dropna(), c["quality"].dropna()
    sd_t = _sd(qt) if len(qt) >= 10 else None
    sd_c = _sd(qc) if len(qc) >= 10 else None
    need_q = stats.required_n_means(sd_t or WORST_CASE_SD, sd_c or WORST_CASE_SD, a.quality_effect, a.alpha, a.power)
    ct, cc = t[cost_col].dropna(), c[cost_col].dropna()
    mean_c = float(cc.mean()) if len(cc) else None
    need_c = None
    if mean_c and len(ct) >= 2 and len(cc) >= 2:
        need_c = stats.required_n_means(float(ct.std(ddof=1)), float(cc.std(ddof=1)),
                                        a.cost_effect_relative * mean_c, a.alpha, a.power)
    mde = None
    if len(qt) >= 2 and len(qc) >= 2:
        mde = stats.minimum_detectable_effect(float(qt.std(ddof=1)), float(qc.std(ddof=1)), len(qt), len(qc),
                                              a.alpha, a.power)
    return {
        "quality_effect": a.quality_effect,
        "feedback_needed_per_arm": need_q,
        "feedback_more_needed": None if need_q is None else max(0, need_q - min(len(qt), len(qc))),
        "sd_assumed": sd_t is None or sd_c is None,
        "cost_effect_relative": a.cost_effect_relative,
        "requests_needed_per_arm_for_cost": need_c,
        "requests_more_needed_for_cost": None if need_c is None else max(0, need_c - min(len(ct), len(cc))),
        "quality_mde_now": mde,
        "alpha": a.alpha,
        "power": a.power,
    }


# ---- the whole report ------------------------------------------------------------------------------------


def _fmt_diff(cmp: dict[str, Any], money: bool = False) -> str:
    if cmp["diff"] is None:
        return "n/a"
    f = (lambda v: f"${v:+.6f}") if money else (lambda v: f"{v:+.4f}")
    ci = f" (95% CI {f(cmp['lo'])} to {f(cmp['hi'])}" if cmp["lo"] is not None else " (no interval"
    p = f"; p = {cmp['p_value']:.3g})" if cmp["p_value"] is not None else ")"
    return f"{f(cmp['diff'])}{ci}{p}"


def verdicts(experiment: Experiment, arms: dict[str, Any], comparisons: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether there is enough data, and one plain sentence per treatment arm (or per shortfall)."""
    a = experiment.analysis
    lines: list[str] = []
    short = [f"{name} has {m['requests']}" for name, m in arms.items() if m["requests"] < a.min_requests_per_arm]
    enough = not short
    if short:
        lines.append(
            f"Not enough data yet: {', '.join(short)} requests; the experiment asks for at least "
            f"{a.min_requests_per_arm} per arm before reading the differences."
        )
    control = experiment.control.name
    for name, cmp in comparisons.items():
        pw = cmp["power"]
        q = cmp["quality"]["welch"]
        cost = cmp["cost"]["welch"]
        head = f"{name} vs {control}: quality {_fmt_diff(q)}, {cmp['cost']['measure']} {_fmt_diff(cost, money=True)}."
        more = pw["feedback_more_needed"]
        sig = [k for k, c in (("quality", q), ("cost", cost)) if c["significant"]]
        if sig:
            head += f" Significant at {a.alpha:g}: {', '.join(sig)}."
        if not q["significant"] and more:
            enough = False
            head += (f" Not enough data yet for quality: detecting a difference of {pw['quality_effect']:g} with "
                     f"{pw['power']:.0%} power needs about {pw['feedback_needed_per_arm']} requests with feedback "
                     f"per arm ({more} more).")
        elif not sig:
            head += (f" No significant difference at {a.alpha:g}; the data would have detected a quality "
                     f"difference of {pw['quality_effect']:g} with {pw['power']:.0%} power.")
        lines.append(head)
    return enough, lines


def analyse(experiment: Experiment, obs: pd.DataFrame, source: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """The report (see module docstring) of ``obs``; ``source`` says where the observations came from."""
    thr = experiment.success_threshold
    by_arm = {a.name: obs[obs["served"] == a.name] for a in experiment.arms}
    unknown = sorted(set(obs["served"].dropna()) - set(by_arm))
    arms = {name: arm_summary(df, thr) for name, df in by_arm.items()}
    control = experiment.control.name
    comparisons = {
        name: compare(df, by_arm[control], experiment, seed)
        for name, df in by_arm.items() if name != control
    }
    cost_for_guardrail = obs["cost_usd"].where(obs["cost_usd"].notna(), obs["expected_cost_usd"])
    stops = replay(experiment, zip(obs["served"], cost_for_guardrail.fillna(0.0),
                                   [None if (isinstance(v, float) and math.isnan(v)) else bool(v) for v in obs["ok"]]))
    diverted = obs[obs["assigned"] != obs["served"]]["assigned"].value_counts()
    enough, lines = verdicts(experiment, arms, comparisons)
    created = pd.to_datetime(obs["created_at"], utc=True) if len(obs) else pd.Series([], dtype=object)
    return {
        "experiment": {
            "name": experiment.name, "description": experiment.description, "unit": experiment.unit,
            "source": experiment.source, "control": control, "success_threshold": thr,
            "start": experiment.start.isoformat() if experiment.start else None,
            "stop": experiment.stop.isoformat() if experiment.stop else None,
            "arms": [{"name": a.name, "weight": a.weight, "control": a.control, "policy": a.describe()}
                     for a in experiment.arms],
            "guardrails": vars(experiment.guardrails) | {},
            "analysis": vars(experiment.analysis) | {},
        },
        "data": {
            **source, "requests": len(obs), "unknown_arms": unknown,
            "first": created.min().isoformat() if len(created) else None,
            "last": created.max().isoformat() if len(created) else None,
        },
        "arms": arms,
        "comparisons": comparisons,
        "guardrails": {
            "stops_recomputed": {k: {"reason": s.reason, "after_requests": s.after_requests} for k, s in stops.items()},
            "diverted_to_control": {str(k): int(v) for k, v in diverted.items()},
        },
        "enough_data": enough,
        "verdict": lines,
    }
