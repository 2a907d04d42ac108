"""The off-policy promotion gate: does the challenger beat the champion on logged production traffic?

Rule (all three must hold; every number comes from :func:`llmroute.offpolicy.evaluate.evaluate_offpolicy`):

1. **enough evidence**: where the challenger and the champion choose differently (the only decisions
   that move the difference), at least ``min_matches`` logged calls served the challenger's choice;
   otherwise the difference rests on a few explored calls with large weights, its interval is not
   to be trusted, and the gate refuses (or both choose the same everywhere: nothing to gain);
2. **quality not worse**: the lower end of the 95% interval of the paired doubly-robust quality
   difference (challenger - champion, same decisions) is at least ``-tolerance``;
3. **better at something**: the DR quality difference is above 0, or the DR cost difference is
   below 0 (cheaper at no real loss of quality is a win).

The paired DR difference is used rather than "challenger DR vs the champion's realised mean" because
both policies are then estimated on the very same decisions by the same estimator, so the prompt mix
and the reward model's errors largely cancel; the champion's realised (on-policy) numbers are still
printed next to it as a sanity check.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmroute.offpolicy import DEFAULT_TOLERANCE, MIN_MATCHES
from llmroute.offpolicy.evaluate import OffPolicyReport


@dataclass(frozen=True)
class OffPolicyVerdict:
    """The gate's decision and, when it refuses, every reason."""

    passes: bool
    reasons: tuple[str, ...]
    tolerance: float
    min_matches: int

    def describe(self) -> str:
        if self.passes:
            return ("the challenger's doubly-robust quality on logged production traffic is not worse than the "
                    f"champion's (tolerance {self.tolerance:g}) and it is better or cheaper")
        return "; ".join(self.reasons)


def offpolicy_verdict(
    report: OffPolicyReport, tolerance: float = DEFAULT_TOLERANCE, min_matches: int = MIN_MATCHES
) -> OffPolicyVerdict:
    """Apply the rule of the module docstring to ``report``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    reasons: list[str] = []
    evidence = report.difference_evidence
    if report.disagreements == 0:
        reasons.append("the challenger chooses the same model as the champion on every logged decision")
    elif evidence < min_matches:
        reasons.append(
            f"not enough evidence: the routers disagree on {report.disagreements} logged decisions, but only "
            f"{evidence} of them served the challenger's choice (at least {min_matches} needed; raise the "
            "exploration share or collect more traffic)"
        )
    dq, dc = report.dr_quality_difference, report.dr_cost_difference
    if dq.lo is None or dq.value is None:
        reasons.append("the DR quality difference has no interval")
    elif dq.lo < -tolerance:
        reasons.append(
            f"quality may be worse: the DR quality difference is {dq.fmt()} and its lower end is below -{tolerance:g}"
        )
    improves = (dq.value is not None and dq.value > 0) or (dc.value is not None and dc.value < 0)
    if not improves:
        reasons.append(f"no gain: DR quality difference {dq.fmt()}, DR cost difference {dc.fmt(6)} USD per request")
    return OffPolicyVerdict(not reasons, tuple(reasons), tolerance, min_matches)
