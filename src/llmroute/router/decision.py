"""What a routing request asks for and what the router answers."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from llmroute.router.data_policy import check_policy

if TYPE_CHECKING:  # the CLI parses targets with this module before it may import numpy
    import numpy as np


@dataclass(frozen=True)
class Constraints:
    """Per-request limits. ``None`` means no limit.

    ``data_policy``: where the prompt may go (:mod:`llmroute.router.data_policy`). ``unavailable``:
    (model, reason) pairs of models that cannot take a call right now (a provider's open circuit
    breaker, a saturated rate limit; filled in by the service), ineligible with ``unavailable: reason``.
    """

    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    allowed_models: tuple[str, ...] | None = None
    excluded_models: tuple[str, ...] = ()
    required_capabilities: tuple[str, ...] = ()
    max_output_tokens: int = 0
    data_policy: str = "any"
    unavailable: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_policy(self.data_policy)  # an unknown policy must not pass as "any"


@dataclass(frozen=True)
class QualityTarget:
    """A quality target as a user states it.

    ``relative``: a share of the best single model's quality (0.95 = "95% of the best model");
    ``absolute``: a mean quality level in [0, 1]. Calibration on validation data turns it into the
    router's knob (threshold or willingness to pay).
    """

    value: float
    kind: str = "relative"

    def __post_init__(self) -> None:
        if self.kind not in ("relative", "absolute"):
            raise ValueError(f"quality target kind must be 'relative' or 'absolute', got {self.kind!r}")
        if not 0.0 <= self.value <= (1.5 if self.kind == "relative" else 1.0):
            if self.kind == "relative":
                raise ValueError(
                    f"quality target {self.value * 100:g}% is out of range: a share of the best model's quality "
                    "must be within 0% and 150%"
                )
            hint = f"; did you mean '{self.value:g}%' (a share of the best model)?" if 1.0 < self.value <= 150 else ""
            raise ValueError(
                f"quality target {self.value:g} is out of range for an absolute target (a quality level in [0, 1])"
                + hint
            )

    @classmethod
    def parse(cls, text: str) -> QualityTarget:
        """'95%' -> 95% of the best model; '0.85' -> absolute quality 0.85."""
        s = text.strip()
        relative = s.endswith("%")
        try:
            value = float(s[:-1]) / 100.0 if relative else float(s)
        except ValueError as exc:
            raise ValueError(
                f"quality target must be a share of the best model like '95%' or a quality level in "
                f"[0, 1] like '0.85', got {text!r}"
            ) from exc
        return cls(value, "relative" if relative else "absolute")

    def __str__(self) -> str:
        return f"{self.value:.0%} of the best model" if self.kind == "relative" else f"quality {self.value:.3f}"

    @classmethod
    def from_str(cls, text: str | None) -> QualityTarget | None:
        """The inverse of ``str(target)`` ('95% of the best model', 'quality 0.850'), for text that
        crossed an edge as a string (a decision log's ``target`` column); None for empty text or
        text that is not one of the two forms. Exact up to the rounding of ``__str__`` (whole
        percent, three decimals)."""
        s = (text or "").strip()
        for head, tail, kind, scale in (("", "% of the best model", "relative", 100.0), ("quality ", "", "absolute", 1.0)):
            if s.startswith(head) and s.endswith(tail) and len(s) > len(head) + len(tail):
                number = s[len(head) : len(s) - len(tail)] if tail else s[len(head) :]
                if number.replace(".", "", 1).isdigit():
                    return cls(float(number) / scale, kind)
        return None


@dataclass(frozen=True)
class RouteQuery:
    """One prompt to route and what its request asks (the arguments of ``Router.route``); what
    :meth:`Router.route_query`, the service's micro-batcher and the A/B arms' policies take."""

    prompt: str
    constraints: Constraints = field(default_factory=Constraints)
    target: QualityTarget | None = None
    confidence: float | None = None
    task: str | None = None
    rule: str | None = None
    knob: float | None = None  # the rule's knob itself (e.g. a cascade operating point's), instead of the target's


class NoEligibleModelError(ValueError):
    """The request's constraints exclude every model; ``reasons`` says why, per model."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{m}: {r}" for m, r in reasons.items())
        super().__init__(f"no model satisfies the request's constraints ({detail})")


@dataclass(frozen=True)
class Candidate:
    """One model as the router scored it for a request. ``expected_cost_usd`` is the mean cost;
    ``cost_cap_usd`` the conservative cost a ``max_cost_usd`` limit was checked against (never below
    the catalog price of the counted prompt tokens plus a long answer); ``assumed`` names every
    catalog figure that was unknown and what was assumed in its place."""

    model: str
    probability: float
    expected_cost_usd: float
    eligible: bool
    excluded_by: str | None = None
    cost_cap_usd: float | None = None
    assumed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The router's answer: the chosen model, every candidate's numbers and why. ``cleared``: the
    choice clears the rule's bar (threshold rule) and the target was reached on validation data;
    false when the router fell back to the best expected quality. ``target``: the quality target the
    knob was calibrated for (None when routed by ``confidence`` or a given knob, or by a static policy).

    ``embedding``: the (d,) embedding row the router predicted from (a read-only view of its batch's
    array, no copy), so the decision log stores it without embedding the prompt again; None for a
    decision no learned router made. It takes no part in equality, ``repr`` or :meth:`to_dict`, and
    ``dataclasses.replace`` carries it along (exploration, budgets and A/B policies rewrite decisions
    with it)."""

    model: str
    candidates: tuple[Candidate, ...]
    reason: str
    cleared: bool
    rule: str
    knob: float
    router_version: str
    target: QualityTarget | None = None
    task_hint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready values: ``target`` as its text (``str(QualityTarget)``), no embedding."""
        out = asdict(dataclasses.replace(self, target=None, embedding=None))
        del out["embedding"]
        out["target"] = None if self.target is None else str(self.target)
        return out
