"""Which arm serves a request: a deterministic, sticky hash of the experiment's unit.

``bucket = int(sha256("<experiment>:<unit value>")[:8]) / 2**64`` is uniform in [0, 1); the arm is
the first whose cumulative share of the total weight exceeds it. The same unit value always gets
the same arm (sticky across requests, processes and restarts); changing the weights moves only the
units whose bucket crosses a boundary; two experiments with different names hash independently.

Edge cases (what :func:`assign` does):

* **No unit value** (e.g. ``unit: user`` and a request without ``user``): the request gets a fresh
  random id as its unit, so it lands in an arm at random with the configured weights, but is not
  sticky. The assignment says so (``sticky=False``).
* **Outside start/stop**: no experiment (``None``); the service routes with its own router and logs
  ``arm`` as null.
* **Arm stopped by a guardrail**: the request is served by the control arm and the log records
  both (``"<experiment>:<control><-<stopped arm>"``, see :func:`arm_label`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from llmroute.abtest.experiment import Experiment

_SCALE = float(2**64)
DIVERTED = "<-"


def bucket(experiment: str, unit_value: str) -> float:
    """A uniform number in [0, 1) fixed by the experiment name and the unit value."""
    digest = hashlib.sha256(f"{experiment}:{unit_value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def arm_for_bucket(experiment: Experiment, u: float) -> str:
    """The arm whose cumulative-weight interval holds ``u``."""
    total = sum(a.weight for a in experiment.arms)
    edge = 0.0
    for a in experiment.arms:
        edge += a.weight / total
        if u < edge:
            return a.name
    return experiment.arms[-1].name  # u within rounding of 1.0


def unit_value(unit: str, *, user: str | None, tenant: str | None, session: str | None) -> str | None:
    """The request's value of the experiment's unit (None when the request does not carry it)."""
    return {"user": user, "tenant": tenant, "session": session}[unit] or None


@dataclass(frozen=True)
class Assignment:
    """The arm that serves a request (``served``) and the one its unit hashed to (``assigned``)."""

    experiment: str
    assigned: str
    served: str
    unit_value: str
    sticky: bool

    @property
    def diverted(self) -> bool:
        return self.served != self.assigned

    @property
    def label(self) -> str:
        return arm_label(self.experiment, self.served, self.assigned)


def arm_label(experiment: str, served: str, assigned: str | None = None) -> str:
    """What the decision log's ``arm`` column holds: ``"<experiment>:<served arm>"``, or
    ``"<experiment>:<served arm><-<assigned arm>"`` when a guardrail diverted the request."""
    if assigned is None or assigned == served:
        return f"{experiment}:{served}"
    return f"{experiment}:{served}{DIVERTED}{assigned}"


def parse_arm_label(label: str) -> tuple[str, str, str] | None:
    """``(experiment, served, assigned)`` from a logged ``arm`` value; None when it is not one."""
    experiment, sep, rest = label.partition(":")
    if not sep or not rest:
        return None
    served, sep, assigned = rest.partition(DIVERTED)
    return experiment, served, (assigned if sep else served)


def assign(
    experiment: Experiment,
    value: str | None,
    now: datetime | None = None,
    stopped: Collection[str] = (),
) -> Assignment | None:
    """The arm for a request whose unit has ``value`` (see module docstring); None outside the window."""
    if not experiment.active(now or datetime.now(UTC)):
        return None
    sticky = value is not None
    unit = value if value is not None else f"random-{uuid.uuid4().hex}"
    assigned = arm_for_bucket(experiment, bucket(experiment.name, unit))
    served = experiment.control.name if assigned in stopped else assigned
    return Assignment(experiment.name, assigned, served, unit, sticky)
