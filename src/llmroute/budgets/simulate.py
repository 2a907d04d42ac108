"""``llmroute budgets simulate``: replay benchmark logs as one budget window of traffic, policies side by side.

The request stream: ``requests`` arrivals over ``days`` days (one budget window), with a daily
pattern (the rate swings between a night trough and an afternoon peak ``peak_ratio`` times higher)
and one burst (``burst_factor`` times the rate for ``burst_hours`` from ``burst_day``); each arrival
is a prompt drawn at random from the logs (only prompts whose every model has a known quality and
cost). The outcome of a request is what the logs recorded for the chosen model: its quality and
its cost (no cascade, every call succeeds). The router predicts every prompt once.

Policies, all at the request's own target (default: the router's):

* ``none``: no budget; its total spend is the *unconstrained spend* a ``50%`` budget refers to;
* ``block``: route as ``none`` while the spend is below the budget, refuse the rest (quality 0);
* ``downgrade``: a fixed ceiling on the expected cost per call for the whole window (models above it
  are not eligible), found with hindsight over the same stream: the highest ceiling whose spend stays
  within the budget, mixed at random with the next higher one in the share that makes the expected
  spend the budget (a single ceiling moves spend in jumps), so it spends what the others spend;
* ``pace``: the pacing controller (:mod:`llmroute.budgets.pacing`) sets each request's target from the
  spend and traffic so far, exactly as the service does (the same code: level, gain and dither).

Two references are reported besides the policies: the **hindsight trade-off**, the one knob for the
whole window whose spend on this very stream is the budget (mixed at random with the next knob like
the downgrade): the best a constant trade-off can do, which pacing estimates online; and the
**floor spend**, what the stream costs when every request goes to its cheapest model (known with
hindsight): below it no policy that answers every request keeps the budget, and the report says the
budget is *infeasible* (pacing then ends at its floor, above the budget).

Quality is the mean over every request (a refused request scores 0); the answered-only mean is also
reported. The quality difference of pacing against each other policy comes with a 95% bootstrap
interval that resamples prompts (a prompt drawn several times stays one unit), paired on the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmroute.budgets.pacing import DEFAULT_SMOOTHING, GainTracker, PaceState, PacingController
from llmroute.data.wide import WideLogs
from llmroute.router import policy
from llmroute.router.decision import QualityTarget

if TYPE_CHECKING:
    from llmroute.router.router import Router

POLICIES = ("none", "block", "downgrade", "pace")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Traffic:
    """The simulated request stream (see module docstring)."""

    requests: int = 5000
    days: float = 7.0
    peak_ratio: float = 3.0
    burst_day: float = 4.0
    burst_hours: float = 6.0
    burst_factor: float = 4.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Traffic:
        """``requests=5000,days=7,peak_ratio=3,burst_day=4,burst_hours=6,burst_factor=4,seed=0`` (any subset)."""
        if not text:
            return cls()
        fields = {f: type(v) for f, v in asdict(cls()).items()}
        values: dict[str, Any] = {}
        for part in text.split(","):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in fields:
                raise ValueError(f"--traffic: expected key=value pairs with keys {sorted(fields)}, got {part!r}")
            try:
                values[key] = fields[key](float(raw)) if fields[key] is int else float(raw)
            except ValueError:
                raise ValueError(f"--traffic: {key} must be a number, got {raw!r}") from None
        t = cls(**values)
        if t.requests < 1 or not t.days > 0 or not t.peak_ratio >= 1 or not t.burst_factor >= 1 or t.burst_hours < 0:
            raise ValueError("--traffic: need requests >= 1, days > 0, peak_ratio >= 1, burst_factor >= 1, burst_hours >= 0")
        return t

    def rate(self, hours: np.ndarray) -> np.ndarray:
        """Relative arrival rate at each hour since the window started."""
        daily = 1.0 + (self.peak_ratio - 1.0) * 0.5 * (1.0 - np.cos(2 * np.pi * ((hours % 24) - 3.0) / 24.0))
        start = self.burst_day * 24.0
        burst = np.where((hours >= start) & (hours < start + self.burst_hours), self.burst_factor, 1.0)
        return daily * burst

    def arrivals(self) -> np.ndarray:
        """Sorted arrival times as shares of the window, in [0, 1)."""
        rng = np.random.default_rng(self.seed)
        grid = np.linspace(0.0, self.days * 24.0, int(self.days * 24 * 60) + 1)
        cdf = np.concatenate([[0.0], np.cumsum(self.rate(grid[:-1]))])
        cdf /= cdf[-1]
        u = np.sort(rng.random(self.requests))
        return np.interp(u, cdf, grid) / (self.days * 24.0)


@dataclass(frozen=True)
class PolicyRun:
    name: str
    spend: np.ndarray  # cumulative spend after each request
    quality: np.ndarray  # per request (0 when refused)
    answered: np.ndarray  # bool per request
    detail: dict[str, Any]

    def summary(self, budget: float) -> dict[str, Any]:
        total = float(self.spend[-1]) if len(self.spend) else 0.0
        return {
            "policy": self.name, "spend_usd": total, "spend_vs_budget": total / budget if budget > 0 else math.inf,
            "mean_quality": float(self.quality.mean()),
            "mean_quality_answered": float(self.quality[self.answered].mean()) if self.answered.any() else 0.0,
            "blocked": int((~self.answered).sum()), **self.detail,
        }


@dataclass(frozen=True)
class BudgetSimulation:
    times: np.ndarray
    budget_usd: float
    runs: dict[str, PolicyRun]
    report: dict[str, Any]


def _outcomes(wide: WideLogs, prompts: np.ndarray, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return wide.quality[prompts, choice], wide.cost[prompts, choice]


def simulate_budget(
    router: Router,
    wide: WideLogs,
    budget: str,
    traffic: Traffic,
    target: QualityTarget | None = None,
    floor: QualityTarget | None = None,
    progress: Callable[[str], None] | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
) -> BudgetSimulation:
    """Run every policy of :data:`POLICIES` on one stream (see module docstring). ``budget``: USD (``"12.5"``)
    or a share of the unconstrained spend (``"50%"``). ``wide`` must hold only complete prompts, with its
    models in the router's order. ``smoothing``: the pacing controller's ``smoothing_requests``."""
    say = progress or (lambda s: None)
    if wide.models != router.models:
        wide = wide.restrict(router.models)
    times = traffic.arrivals()
    rng = np.random.default_rng(traffic.seed + 1)
    prompts = rng.integers(0, len(wide), size=traffic.requests)
    say(f"predicting {len(wide)} prompts for {traffic.requests} requests over {traffic.days:g} days")
    probs, costs = router.predict(router.prepare(list(wide.prompts)))
    rule = router.default_rule
    table = router.knob_tables[rule]
    base = target or router.default_target
    base_knob, _ = table.knob_for(base)
    p, c = probs[prompts], costs[prompts]
    everywhere = np.ones_like(p, dtype=bool)
    none_choice, _ = policy.choose(rule, p, c, everywhere, base_knob)
    q_none, c_none = _outcomes(wide, prompts, none_choice)
    unconstrained = float(c_none.sum())
    amount = _budget_amount(budget, unconstrained)
    runs: dict[str, PolicyRun] = {}
    runs["none"] = PolicyRun("none", np.cumsum(c_none), q_none, np.ones(len(prompts), bool), {})

    # block at 100%: admitted while the spend so far is below the amount
    spent_before = np.concatenate([[0.0], np.cumsum(c_none)[:-1]])
    admitted = spent_before < amount
    q_b, c_b = np.where(admitted, q_none, 0.0), np.where(admitted, c_none, 0.0)
    runs["block"] = PolicyRun("block", np.cumsum(c_b), q_b, admitted,
                              {"first_blocked_at": float(times[~admitted][0]) if (~admitted).any() else None})

    # static downgrade: the highest expected-cost ceiling whose spend stays within the amount
    say("calibrating the static downgrade ceiling")
    levels = np.unique(c)
    lo, hi = 0, len(levels) - 1

    def downgrade(ceiling: float) -> tuple[np.ndarray, np.ndarray]:
        mask = c <= ceiling
        none_ok = np.nonzero(~mask.any(axis=1))[0]
        mask[none_ok, np.argmin(c[none_ok], axis=1)] = True  # nothing under the ceiling: the cheapest model
        ch, _ = policy.choose(rule, p, c, mask, base_knob)
        return _outcomes(wide, prompts, ch)

    while lo < hi:  # largest level with spend <= amount
        mid = (lo + hi + 1) // 2
        if downgrade(float(levels[mid]))[1].sum() <= amount:
            lo = mid
        else:
            hi = mid - 1
    ceiling = float(levels[lo])
    q_d, c_d = downgrade(ceiling)
    detail: dict[str, Any] = {"ceiling_usd": ceiling}
    if lo + 1 < len(levels) and c_d.sum() < amount:
        # the next ceiling overspends: mix the two at random, in the share that spends the budget on average
        q_up, c_up = downgrade(float(levels[lo + 1]))
        share = float((amount - c_d.sum()) / (c_up.sum() - c_d.sum()))
        up = np.random.default_rng(traffic.seed + 2).random(len(prompts)) < share
        q_d, c_d = np.where(up, q_up, q_d), np.where(up, c_up, c_d)
        detail.update(ceiling_above_usd=float(levels[lo + 1]), share_above=share)
    runs["downgrade"] = PolicyRun("downgrade", np.cumsum(c_d), q_d, np.ones(len(prompts), bool), detail)

    # the hindsight trade-off: one knob (table index) for the whole window whose spend is the amount
    say("finding the hindsight trade-off")
    grid = policy.knob_grid(rule)
    base_index = int(np.argmin(np.abs(grid - base_knob)))
    lo_i, hi_i = 0, base_index  # indices at or below the router's own knob (cheaper behaviour)

    def at_index(i: int) -> tuple[np.ndarray, np.ndarray]:
        ch, _ = policy.choose(rule, p, c, everywhere, float(grid[i]))
        return _outcomes(wide, prompts, ch)

    while lo_i < hi_i:  # the dearest index whose spend stays within the amount
        mid = (lo_i + hi_i + 1) // 2
        if at_index(mid)[1].sum() <= amount:
            lo_i = mid
        else:
            hi_i = mid - 1
    q_h, c_h = at_index(lo_i)
    hind: dict[str, Any] = {"knob": float(grid[lo_i])}
    if lo_i < base_index and c_h.sum() < amount:
        q_up, c_up = at_index(lo_i + 1)
        if c_up.sum() > c_h.sum():
            share = float(min(1.0, (amount - c_h.sum()) / (c_up.sum() - c_h.sum())))
            up = np.random.default_rng(traffic.seed + 3).random(len(prompts)) < share
            q_h, c_h = np.where(up, q_up, q_h), np.where(up, c_up, c_h)
            hind.update(knob_above=float(grid[lo_i + 1]), share_above=share)
    hindsight = PolicyRun("hindsight trade-off", np.cumsum(c_h), q_h, np.ones(len(prompts), bool), hind)

    # pacing, request by request as the service does it
    say("pacing")
    pacer = PacingController(table, floor, smoothing_requests=smoothing, seed=traffic.seed + 4)
    gain = GainTracker()
    level: float | None = None
    spent, q_p, c_p, targets = 0.0, np.empty(len(prompts)), np.empty(len(prompts)), np.empty(len(prompts))
    for i in range(len(prompts)):
        step = pacer.step(PaceState(amount, spent, i, float(times[i]), gain.gain, level=level), base)
        level = step.level
        knob, _ = table.knob_for(step.target)
        ch, _ = policy.choose(rule, p[i : i + 1], c[i : i + 1], everywhere[i : i + 1], knob)
        j = int(ch[0])
        q_p[i], c_p[i] = wide.quality[prompts[i], j], wide.cost[prompts[i], j]
        spent += c_p[i]
        gain.add(step.table_cost_usd, c_p[i])
        targets[i] = step.target.value
    runs["pace"] = PolicyRun("pace", np.cumsum(c_p), q_p, np.ones(len(prompts), bool),
                             {"target_min": float(targets.min()), "target_max": float(targets.max()),
                              "target_mean": float(targets.mean()), "smoothing_requests": smoothing})
    floor_spend = float(np.nanmin(wide.cost[prompts], axis=1).sum())
    cheapest_model = int(np.argmin(wide.cost[prompts].sum(axis=0)))
    say("bootstrapping the quality differences")
    differences = {
        other: _paired_bootstrap(runs["pace"].quality - runs[other].quality, prompts, traffic.seed + 5)
        for other in ("none", "block", "downgrade")
    }
    differences["hindsight trade-off"] = _paired_bootstrap(runs["pace"].quality - q_h, prompts, traffic.seed + 5)
    report = {
        "requests": traffic.requests, "prompts": len(wide), "traffic": asdict(traffic), "rule": rule,
        "target": str(base), "floor": str(floor) if floor else None, "budget": budget,
        "budget_usd": amount, "unconstrained_spend_usd": unconstrained,
        "floor_spend_usd": floor_spend, "feasible": amount >= floor_spend,
        "cheapest_model": wide.models[cheapest_model],
        "cheapest_model_spend_usd": float(wide.cost[prompts, cheapest_model].sum()),
        "policies": [runs[n].summary(amount) for n in POLICIES],
        "hindsight_trade_off": hindsight.summary(amount),
        "pace_quality_difference": differences,
    }
    return BudgetSimulation(times, amount, runs, report)


def _paired_bootstrap(diff: np.ndarray, prompts: np.ndarray, seed: int) -> dict[str, float]:
    """Mean of the per-request differences and its 95% percentile interval over ``BOOTSTRAP`` resamples of
    the prompts (every request of a drawn prompt comes with it)."""
    ids, inverse = np.unique(prompts, return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(BOOTSTRAP, len(ids)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci_low": float(low), "ci_high": float(high)}


def _budget_amount(budget: str, unconstrained: float) -> float:
    text = budget.strip()
    try:
        value = float(text[:-1]) / 100.0 * unconstrained if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"--budget: expected USD like 12.5 or a share of the unconstrained spend like 50%, got {budget!r}") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"--budget: must be a positive amount, got {budget!r}")
    return value


def markdown(report: dict[str, Any]) -> str:
    """The policies side by side as a Markdown table, with feasibility and pacing's quality differences."""
    lines = [
        f"budget ${report['budget_usd']:.4f} ({report['budget']}; unconstrained spend ${report['unconstrained_spend_usd']:.4f}), "
        f"{report['requests']} requests, target {report['target']}, rule {report['rule']}",
        "",
    ]
    if "feasible" in report and not report["feasible"]:
        lines += [
            f"INFEASIBLE: the budget ${report['budget_usd']:.4f} is below the floor spend "
            f"${report['floor_spend_usd']:.4f} ({report['floor_spend_usd'] / report['unconstrained_spend_usd']:.1%} of the "
            f"unconstrained spend: every request on its cheapest model; the cheapest single model, "
            f"{report['cheapest_model']}, spends ${report['cheapest_model_spend_usd']:.4f}). No policy that answers "
            "every request can keep it: pacing ends at its floor, above the budget; only blocking keeps it.",
            "",
        ]
    rows = list(report["policies"])
    if "hindsight_trade_off" in report:
        rows.append({**report["hindsight_trade_off"], "policy": "(reference) hindsight trade-off"})
    lines += ["| policy | spend | spend / budget | mean quality | quality (answered) | blocked |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['policy']} | ${r['spend_usd']:.4f} | {r['spend_vs_budget']:.1%} | {r['mean_quality']:.4f} | "
                      f"{r['mean_quality_answered']:.4f} | {r['blocked']} |")
    if "pace_quality_difference" in report:
        lines.append("")
        lines.append("pacing's mean quality minus each other's (95% bootstrap interval over prompts): " + "; ".join(
            f"{name} {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
            for name, d in report["pace_quality_difference"].items()))
    return "\n".join(lines)


def plot(sim: BudgetSimulation, path: Any, title: str = "") -> None:
    """Cumulative spend over the window per policy, with the budget and the even-spend plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    days = sim.report["traffic"]["days"]
    x = sim.times * days
    for name, run in sim.runs.items():
        ax.plot(x, run.spend, label=f"{name} (quality {run.quality.mean():.3f})")
    ax.axhline(sim.budget_usd, color="black", linestyle="--", linewidth=1, label="budget")
    ax.plot([0, days], [0, sim.budget_usd], color="grey", linestyle=":", linewidth=1, label="even plan")
    ax.set_xlabel("day of the window")
    ax.set_ylabel("cumulative spend (USD)")
    ax.set_title(title or "budget simulation")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
