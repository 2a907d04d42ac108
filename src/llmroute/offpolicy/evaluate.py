"""Off-policy evaluation of routers on logged production traffic (IPS, SNIPS, DM, DR; bootstrap CIs).

For each target router (the challenger, and the champion as a comparison) the deterministic policy
"what this router would have chosen for the logged request" (:mod:`.policies`) is evaluated for two
rewards: quality (the feedback score) and cost (the realised USD cost), with the estimators of
:mod:`.estimators` and the cross-fitted reward models of :mod:`.reward`. Next to them:

* the logging policy's realised means (everything served, exploration included);
* the champion's realised (on-policy) means: decisions of the champion's version where it served its
  own pick (exploration draws are independent of the prompt, so these are a random subsample);
* the paired DR difference challenger - champion per decision, with a bootstrap interval (both
  estimated on the same decisions, so the prompt mix cancels out): what the off-policy gate reads.

Overlap: a decision informs about a target policy only where the logged model is the one the target
would choose (a *match*). Decisions logged with propensity 1 (no exploration) only ever match a
policy that agrees with the logging router there; where the target picks a model the logging policy
could not have served (probability 0: *unsupported*), IPS/SNIPS count zero reward and DR relies on the
reward model alone. The report warns when matches or the effective sample size are small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from llmroute.offpolicy import MIN_MATCHES
from llmroute.offpolicy.estimators import (
    Interval,
    PolicyEstimate,
    dr_terms,
    estimate,
    mean_interval,
)
from llmroute.offpolicy.logged import LoggedTraffic
from llmroute.offpolicy.policies import RouterPredictions, router_picks
from llmroute.offpolicy.reward import crossfit_cost, crossfit_quality
from llmroute.router.router import Router


@dataclass(frozen=True)
class PolicyResult:
    """One target policy's estimates for quality and cost, and how well the log supports it."""

    label: str
    router_version: str
    quality: PolicyEstimate
    cost: PolicyEstimate
    unsupported: int
    agrees_with_logging_router: int
    no_eligible_model: int
    counterfactual_matches: int  # matches where this policy disagrees with the logging router (explored calls)


@dataclass(frozen=True)
class OffPolicyReport:
    """Everything :func:`evaluate_offpolicy` found (see module docstring); ``to_dict`` for JSON."""

    decisions_read: int
    decisions_used: int
    skipped: dict[str, int]
    explored: int
    escalated: int
    logging_quality: Interval
    logging_cost: Interval
    champion_realised_decisions: int
    champion_realised_quality: Interval
    champion_realised_cost: Interval
    champion: PolicyResult
    challenger: PolicyResult
    dr_quality_difference: Interval  # challenger - champion, paired
    dr_cost_difference: Interval
    disagreements: int  # decisions where challenger and champion choose different models
    difference_evidence: int  # of those, decisions that served the challenger's choice
    n_boot: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def table(self) -> str:
        """Plain-text summary: quality as a mean score, cost in USD per 1,000 requests."""
        lines = [
            (f"off-policy evaluation on {self.decisions_used} logged decisions ({self.decisions_read} read, "
             f"{self.explored} explored; 95% bootstrap intervals, {self.n_boot} resamples)"),
            f"{'':<34}{'quality':>28}  {'$ per 1,000 requests':>30}",
            f"{'logging policy, realised':<34}{self.logging_quality.fmt():>28}  {self.logging_cost.fmt(4, 1000):>30}",
            (f"{'champion, realised (on-policy)':<34}{self.champion_realised_quality.fmt():>28}  "
             f"{self.champion_realised_cost.fmt(4, 1000):>30}   ({self.champion_realised_decisions} decisions)"),
        ]
        for res in (self.champion, self.challenger):
            for est in ("ips", "snips", "dm", "dr"):
                q, c = getattr(res.quality, est), getattr(res.cost, est)
                lines.append(f"{res.label + ', ' + est.upper():<34}{q.fmt():>28}  {c.fmt(4, 1000):>30}")
            lines.append(
                f"{'':<4}{res.label}: {res.quality.matches} matched decisions ({res.counterfactual_matches} where it "
                f"disagrees with the logging router), effective sample size {res.quality.effective_sample_size:.1f}, "
                f"unsupported {res.unsupported}, agrees with the logging router on {res.agrees_with_logging_router}"
            )
        lines.append(
            f"{'challenger - champion, DR (paired)':<34}{self.dr_quality_difference.fmt():>28}  "
            f"{self.dr_cost_difference.fmt(4, 1000):>30}"
        )
        lines.append(
            f"{'':<4}they choose differently on {self.disagreements} decisions; {self.difference_evidence} of those "
            "served the challenger's choice (the evidence behind the difference)"
        )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _prices(routers: list[Router], models: tuple[str, ...]) -> dict[str, tuple[float | None, float | None]]:
    from llmroute.data.catalog import load_catalog

    catalog = load_catalog()
    out: dict[str, tuple[float | None, float | None]] = {}
    for m in models:
        spec = next((r.specs.get(m) for r in routers if r.specs.get(m) is not None), None)
        if spec is None and m in catalog:
            spec = catalog[m]
        out[m] = (spec.input_price_per_1m, spec.output_price_per_1m) if spec is not None else (None, None)
    return out


def _fill(picks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """A policy with no eligible model for a request is scored as if it served the logged model."""
    return np.array([p if p is not None else f for p, f in zip(picks, fallback)], dtype=object)


def evaluate_offpolicy(
    traffic: LoggedTraffic,
    challenger: Router,
    champion: Router | None = None,
    cache_path: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_matches: int = MIN_MATCHES,
    labels: tuple[str, str] = ("champion", "challenger"),
) -> OffPolicyReport:
    """Estimate ``challenger`` (and ``champion``; without one, the logging router's own recomputed
    picks) on ``traffic``. Raises ValueError when no decision is usable."""
    if len(traffic) == 0:
        raise ValueError("no usable logged decisions (need an outcome, feedback, the prompt text and a cost): "
                         + "; ".join(f"{k}: {v}" for k, v in traffic.skipped.items()))
    ch_pred = router_picks(challenger, traffic, cache_path)
    logged = traffic.logged_model
    champ_pred: RouterPredictions | None = None
    if champion is not None:
        champ_pred = router_picks(champion, traffic, cache_path)
        champ_picks = _fill(champ_pred.picks, logged)
        champ_version = champion.version
    else:
        champ_picks = _fill(traffic.router_pick, logged)
        versions = sorted(set(traffic.router_version))
        champ_version = versions[0] if len(versions) == 1 else "the logging routers (" + ", ".join(versions) + ")"
    ch_picks = _fill(ch_pred.picks, logged)

    models = tuple(sorted({*map(str, logged), *challenger.models, *(champion.models if champion else ())}))
    query = {"logged": list(logged), "challenger": list(ch_picks), "champion": list(champ_picks)}
    q_hat = crossfit_quality(ch_pred.embeddings, ch_pred.input_tokens, list(logged), traffic.quality, query,
                             models, seed=seed)
    c_hat = crossfit_cost(ch_pred.input_tokens, list(logged), traffic.cost, query, models,
                          _prices([r for r in (challenger, champion) if r is not None], models), seed=seed)
    p = traffic.propensity

    def policy_result(label: str, version: str, picks: np.ndarray, raw_picks: np.ndarray) -> PolicyResult:
        key = "challenger" if label == labels[1] else "champion"
        qe = estimate(logged, picks, p, traffic.quality, q_hat[key], q_hat["logged"], n_boot=n_boot, seed=seed)
        ce = estimate(logged, picks, p, traffic.cost, c_hat[key], c_hat["logged"], n_boot=n_boot, seed=seed)
        support = traffic.logging_probability(picks)
        return PolicyResult(
            label=label,
            router_version=version,
            quality=qe,
            cost=ce,
            unsupported=int(np.sum(support == 0.0)),
            agrees_with_logging_router=int(sum(a == b for a, b in zip(picks, traffic.router_pick))),
            no_eligible_model=int(sum(x is None for x in raw_picks)),
            counterfactual_matches=int(sum(a == b and a != c for a, b, c in zip(picks, logged, traffic.router_pick))),
        )

    champ_res = policy_result(labels[0], champ_version, champ_picks,
                              champ_pred.picks if champ_pred is not None else traffic.router_pick)
    ch_res = policy_result(labels[1], challenger.version, ch_picks, ch_pred.picks)

    on_policy = ~traffic.explored & np.array([x is not None for x in traffic.router_pick])
    if champion is not None and np.any(traffic.router_version == champion.version):
        on_policy &= traffic.router_version == champion.version
    dq = (dr_terms(logged, ch_picks, p, traffic.quality, q_hat["challenger"], q_hat["logged"])
          - dr_terms(logged, champ_picks, p, traffic.quality, q_hat["champion"], q_hat["logged"]))
    dc = (dr_terms(logged, ch_picks, p, traffic.cost, c_hat["challenger"], c_hat["logged"])
          - dr_terms(logged, champ_picks, p, traffic.cost, c_hat["champion"], c_hat["logged"]))

    differ = np.array([a != b for a, b in zip(ch_picks, champ_picks)], dtype=bool)
    evidence = int(np.sum(differ & (logged == ch_picks)))
    warnings: list[str] = []
    n = len(traffic)
    if differ.any() and evidence < min_matches:
        warnings.append(
            f"the challenger and the champion choose differently on {int(differ.sum())} decisions, but only {evidence} "
            f"of them served the challenger's choice (fewer than {min_matches}): the difference rests on a handful of "
            "explored calls with large weights, and its bootstrap interval is too narrow to trust"
        )
    if np.all(p >= 1.0):
        warnings.append(
            "no decision was logged under exploration (every propensity is 1): the log only informs about "
            "policies that agree with the logging router; where the target disagrees, only the reward model speaks"
        )
    for res in (champ_res, ch_res):
        if res.quality.matches < min_matches:
            warnings.append(
                f"poor overlap for the {res.label}: only {res.quality.matches} of {n} logged decisions served "
                f"the model it would choose (fewer than {min_matches}); its IPS/SNIPS/DR estimates are unreliable"
            )
        if res.unsupported:
            warnings.append(
                f"the {res.label} chooses, on {res.unsupported} of {n} decisions, a model the logging policy "
                "could not have served (probability 0): IPS/SNIPS count no reward there and DR relies on the "
                "reward model alone"
            )
    return OffPolicyReport(
        decisions_read=traffic.read,
        decisions_used=n,
        skipped=dict(traffic.skipped),
        explored=int(traffic.explored.sum()),
        escalated=int((traffic.outcome_model != logged).sum()),
        logging_quality=mean_interval(traffic.quality, n_boot, seed=seed),
        logging_cost=mean_interval(traffic.cost, n_boot, seed=seed),
        champion_realised_decisions=int(on_policy.sum()),
        champion_realised_quality=mean_interval(traffic.quality[on_policy], n_boot, seed=seed),
        champion_realised_cost=mean_interval(traffic.cost[on_policy], n_boot, seed=seed),
        champion=champ_res,
        challenger=ch_res,
        dr_quality_difference=mean_interval(dq, n_boot, seed=seed),
        dr_cost_difference=mean_interval(dc, n_boot, seed=seed),
        disagreements=int(differ.sum()),
        difference_evidence=evidence,
        n_boot=n_boot,
        warnings=warnings,
    )
