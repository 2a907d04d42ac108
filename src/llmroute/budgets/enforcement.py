"""What a budget does to a request: the enforcement registry (``alert``, ``pace``, ``downgrade``, ``block``).

Each enforcement looks at a budget's :class:`BudgetStatus` and returns an :class:`Adjustment` (or
None to leave the request alone). :func:`combine` merges the adjustments of every budget that
applies to a request (its tenant, key, user and the global budget): any block blocks; the lowest
paced target and the lowest cost ceiling win. New enforcements register under a name with
:func:`register`; budget files name them in ``enforcement``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmroute.budgets.pacing import PaceState, PaceStep, PacingController
from llmroute.budgets.spec import BudgetSpec
from llmroute.budgets.windows import Window
from llmroute.router.decision import QualityTarget


@dataclass(frozen=True)
class BudgetStatus:
    """A budget's window and the spend in it at ``now``."""

    spec: BudgetSpec
    window: Window
    spent_usd: float
    calls: int
    now: datetime
    gain: float = 1.0
    level: float | None = None  # pacing: the budget's trade-off so far (see llmroute.budgets.pacing)

    @property
    def share(self) -> float:
        """Spend as a share of the amount (inf for a 0 amount with any spend)."""
        if self.spec.amount_usd <= 0:
            return float("inf") if self.spent_usd > 0 else 0.0
        return self.spent_usd / self.spec.amount_usd

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.spec.amount_usd

    @property
    def resets_at(self) -> datetime | None:
        """When the window's spend starts again from 0 (None for a rolling window: it drains continuously)."""
        return None if self.window.rolling else self.window.end

    def pace_state(self) -> PaceState:
        return PaceState(self.spec.amount_usd, self.spent_usd, self.calls, self.window.elapsed_share(self.now), self.gain,
                         self.window.rolling, self.level)


@dataclass(frozen=True)
class Adjustment:
    """What one budget asks of one request."""

    budget: str
    enforcement: str
    block: bool = False
    target: QualityTarget | None = None  # pacing: route at this (absolute) target instead
    pace: PaceStep | None = None
    max_cost_usd: float | None = None  # downgrade: only models expected to cost at most this
    note: str = ""


@dataclass(frozen=True)
class Context:
    """What enforcements may use about the request: its own target and the router's pacing controller."""

    base_target: QualityTarget
    pacer: Callable[[BudgetSpec], PacingController | None] = lambda spec: None


Enforcement = Callable[[BudgetStatus, Context], Adjustment | None]
_REGISTRY: dict[str, Enforcement] = {}


def register(name: str, fn: Enforcement) -> None:
    """Make ``fn`` the enforcement called ``name`` (replacing any earlier one)."""
    _REGISTRY[name] = fn


def get(name: str) -> Enforcement:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown enforcement {name!r}; expected one of {sorted(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _alert(status: BudgetStatus, ctx: Context) -> Adjustment | None:
    return None  # alerts are raised by llmroute.budgets.alerts for every budget, whatever its enforcement


def _block(status: BudgetStatus, ctx: Context) -> Adjustment | None:
    if not status.exhausted:
        return None
    return Adjustment(status.spec.name, "block", block=True,
                      note=f"budget {status.spec.name!r} is spent (${status.spent_usd:.4f} of ${status.spec.amount_usd:.2f})")


def _downgrade(status: BudgetStatus, ctx: Context) -> Adjustment | None:
    spec = status.spec
    if spec.ceiling_usd is None or status.share < spec.downgrade_at:
        return None
    return Adjustment(
        spec.name, "downgrade", max_cost_usd=spec.ceiling_usd,
        note=f"budget {spec.name!r} at {status.share:.0%} of ${spec.amount_usd:.2f} allows only models expected "
             f"to cost at most ${spec.ceiling_usd:g} per call",
    )


def _pace(status: BudgetStatus, ctx: Context) -> Adjustment | None:
    pacer = ctx.pacer(status.spec)
    if pacer is None:
        return None
    step = pacer.step(status.pace_state(), ctx.base_target)
    if step.allowance_usd is None:
        return None
    elapsed = status.window.elapsed_share(status.now)
    note = (f"budget {status.spec.name!r} paces spend (${status.spent_usd:.4f} of ${status.spec.amount_usd:.2f} at "
            f"{elapsed:.0%} of the window; ${step.allowance_usd:.6f} per request left) to target {step.target}")
    return Adjustment(status.spec.name, "pace", target=step.target, pace=step, note=note)


for _name, _fn in (("alert", _alert), ("block", _block), ("downgrade", _downgrade), ("pace", _pace)):
    register(_name, _fn)


@dataclass(frozen=True)
class Verdict:
    """The merged adjustments of every budget that applies to a request."""

    adjustments: tuple[Adjustment, ...] = ()
    blocked_by: BudgetStatus | None = None
    target: QualityTarget | None = None
    max_cost_usd: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changes_routing(self) -> bool:
        return self.target is not None or self.max_cost_usd is not None


def combine(statuses: Sequence[BudgetStatus], ctx: Context) -> Verdict:
    """Run each budget's enforcement and merge (see module docstring). ``blocked_by`` is the first
    exhausted blocking budget, in the order given."""
    adjustments: list[Adjustment] = []
    blocked: BudgetStatus | None = None
    target: QualityTarget | None = None
    ceiling: float | None = None
    for status in statuses:
        adj = get(status.spec.enforcement)(status, ctx)
        if adj is None:
            continue
        adjustments.append(adj)
        if adj.block and blocked is None:
            blocked = status
        if adj.target is not None and (target is None or adj.target.value < target.value):
            target = adj.target
        if adj.max_cost_usd is not None:
            ceiling = adj.max_cost_usd if ceiling is None else min(ceiling, adj.max_cost_usd)
    return Verdict(tuple(adjustments), blocked, target, ceiling, tuple(a.note for a in adjustments if a.note))
