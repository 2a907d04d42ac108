"""An A/B experiment as written in a YAML file, validated into frozen dataclasses.

Format (see ``experiments/*.yaml`` at the repository root and ``docs/ab-testing.md``)::

    name: learned-vs-seed-budget          # letters, digits, '.', '_' or '-'
    unit: user                            # user | tenant | session: what the sticky hash keys on
    start: 2026-11-01T00:00:00Z           # optional; ISO datetimes (UTC when no zone is given)
    stop: 2026-12-01T00:00:00Z            # optional
    success_threshold: 0.5                # a request meets the target when its feedback quality >= this
    arms:
      - {name: seed-budget, weight: 1, control: true, rules: {kind: budget, budget_usd: 0.05}}
      - {name: learned, weight: 1, router: "models:/llmroute@champion"}
      - {name: gpt4, weight: 1, always: gpt-4-1106-preview}
    guardrails: {max_cost_per_request_usd: 0.02, max_error_rate: 0.2, min_requests: 100}
    analysis: {min_requests_per_arm: 100, quality_effect: 0.05, cost_effect_relative: 0.1, alpha: 0.05, power: 0.8}

Each arm is exactly one of: ``router`` (a registry URI ``models:/<name>@<alias>`` or ``/<version>``,
or a saved router folder, relative to the YAML file), ``rules`` (the seed guide's static rules:
``kind`` budget | task | latency, optional ``file`` with your own rules, ``budget_usd`` /
``latency_ms`` used when a request does not state ``max_cost_usd`` / ``max_latency_ms``) or
``always`` (one model for every request). Exactly one arm is the control.

Errors (:class:`ExperimentError`) name the file, the field and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

UNITS = ("user", "tenant", "session")
RULE_KINDS = ("budget", "task", "latency")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ExperimentError(ValueError):
    """An experiment file is missing, unreadable or invalid; the message names the file and field."""


@dataclass(frozen=True)
class RulesArm:
    """The seed guide's static rules of one ``kind``; ``file`` None = the bundled seed_rules.yaml."""

    kind: str
    file: Path | None = None
    budget_usd: float = 0.05
    latency_ms: float = 1000.0

    def describe(self) -> str:
        where = self.file.name if self.file else "seed_rules.yaml"
        if self.kind == "budget":
            return f"rules:{self.kind}({where}, default budget ${self.budget_usd:g})"
        if self.kind == "latency":
            return f"rules:{self.kind}({where}, default {self.latency_ms:g} ms)"
        return f"rules:{self.kind}({where})"


@dataclass(frozen=True)
class Arm:
    """One arm: a name, a traffic weight, and exactly one of ``router`` / ``rules`` / ``always``."""

    name: str
    weight: float
    control: bool = False
    router: str | None = None
    rules: RulesArm | None = None
    always: str | None = None

    @property
    def kind(self) -> str:
        return "router" if self.router is not None else "rules" if self.rules is not None else "always"

    def describe(self) -> str:
        if self.router is not None:
            return f"router {self.router}"
        if self.rules is not None:
            return self.rules.describe()
        return f"always {self.always}"


@dataclass(frozen=True)
class Guardrails:
    """Stop an arm whose running mean cost per request or error rate exceeds these, once it has
    served ``min_requests`` requests (None = no limit)."""

    max_cost_per_request_usd: float | None = None
    max_error_rate: float | None = None
    min_requests: int = 100


@dataclass(frozen=True)
class Analysis:
    """How the report judges the data: the minimum per arm, the effects the power note is about."""

    min_requests_per_arm: int = 100
    quality_effect: float = 0.05
    cost_effect_relative: float = 0.10
    alpha: float = 0.05
    power: float = 0.80
    n_boot: int = 2000


@dataclass(frozen=True)
class Experiment:
    """A validated experiment (see module docstring)."""

    name: str
    unit: str
    arms: tuple[Arm, ...]
    start: datetime | None = None
    stop: datetime | None = None
    success_threshold: float = 0.5
    guardrails: Guardrails = Guardrails()
    analysis: Analysis = Analysis()
    description: str = ""
    source: str = "<memory>"

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ExperimentError(f"{self.source}: arms: names must be unique, got {names}")
        if sum(a.control for a in self.arms) != 1:
            raise ExperimentError(f"{self.source}: arms: exactly one arm must have 'control: true'")

    @property
    def control(self) -> Arm:
        return next(a for a in self.arms if a.control)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"experiment {self.name!r} has no arm {name!r}; arms: {[a.name for a in self.arms]}")

    def active(self, now: datetime) -> bool:
        """True between ``start`` (inclusive) and ``stop`` (exclusive); open ends are unbounded."""
        return (self.start is None or now >= self.start) and (self.stop is None or now < self.stop)


# ---- parsing (pydantic at the edge) -------------------------------------------------------------------


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["budget", "task", "latency"]
    file: str | None = None
    budget_usd: Annotated[float, Field(gt=0)] = 0.05
    latency_ms: Annotated[float, Field(gt=0)] = 1000.0


class _Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    control: bool = False
    router: Annotated[str, Field(min_length=1)] | None = None
    rules: _Rules | None = None
    always: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_policy(self) -> _Arm:
        given = [k for k in ("router", "rules", "always") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"arm {self.name!r}: expected exactly one of 'router', 'rules' or 'always', got {given or 'none'}"
            )
        return self


class _Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_cost_per_request_usd: Annotated[float, Field(gt=0)] | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    min_requests: Annotated[int, Field(ge=1)] = 100


class _Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_requests_per_arm: Annotated[int, Field(ge=2)] = 100
    quality_effect: Annotated[float, Field(gt=0, le=1)] = 0.05
    cost_effect_relative: Annotated[float, Field(gt=0)] = 0.10
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    power: Annotated[float, Field(gt=0, lt=1)] = 0.80
    n_boot: Annotated[int, Field(ge=100)] = 2000


class _Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    unit: Literal["user", "tenant", "session"]
    start: datetime | None = None
    stop: datetime | None = None
    success_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    arms: Annotated[list[_Arm], Field(min_length=2)]
    guardrails: _Guardrails = _Guardrails()
    analysis: _Analysis = _Analysis()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _Arm._name(v)

    @field_validator("start", "stop")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else (v.replace(tzinfo=UTC) if v.tzinfo is None else v)

    @model_validator(mode="after")
    def _checks(self) -> _Experiment:
        controls = [a.name for a in self.arms if a.control]
        if len(controls) != 1:
            raise ValueError(f"exactly one arm must have 'control: true', got {controls or 'none'}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.start is not None and self.stop is not None and self.stop <= self.start:
            raise ValueError(f"'stop' ({self.stop.isoformat()}) must be after 'start' ({self.start.isoformat()})")
        return self


def _where(loc: tuple[Any, ...], raw: Any) -> str:
    """'arms[1] (learned).weight' for a pydantic error location."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] = f"{parts[-1]}[{item}]" + (f" ({name})" if name else "") if parts else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def parse_experiment(raw: Any, source: str = "<memory>", base: Path | None = None) -> Experiment:
    """Validate a parsed YAML mapping; relative router folders and rule files resolve against ``base``."""
    if not isinstance(raw, dict):
        raise ExperimentError(f"{source}: expected a mapping with 'name', 'unit' and 'arms', got {type(raw).__name__}")
    try:
        spec = _Experiment.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{source}: {_where(tuple(e['loc']), raw)}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] not in ("missing",) and not isinstance(e["input"], dict) else "")
            for e in exc.errors()
        ]
        raise ExperimentError("\n".join(lines)) from None

    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() or base is None else base / path

    arms = []
    for a in spec.arms:
        router = a.router
        if router is not None and not router.startswith("models:/"):
            router = str(resolve(router))
        rules = None
        if a.rules is not None:
            rules = RulesArm(a.rules.kind, resolve(a.rules.file) if a.rules.file else None, a.rules.budget_usd,
                             a.rules.latency_ms)
        arms.append(Arm(a.name, a.weight, a.control, router, rules, a.always))
    return Experiment(
        name=spec.name, unit=spec.unit, arms=tuple(arms), start=spec.start, stop=spec.stop,
        success_threshold=spec.success_threshold, guardrails=Guardrails(**spec.guardrails.model_dump()),
        analysis=Analysis(**spec.analysis.model_dump()), description=spec.description, source=source,
    )


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate the experiment YAML at ``path``."""
    p = Path(path).expanduser()
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ExperimentError(f"{p}: cannot read the experiment file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{p}: not valid YAML: {exc}") from exc
    return parse_experiment(raw, str(p), p.parent)
