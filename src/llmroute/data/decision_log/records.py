"""What the decision log holds: one record per routing decision, per outcome and per feedback.

Records are frozen dataclasses built on the request path (cheap: no I/O, no numpy). ``data`` must not
import ``router`` (dependencies point ``router -> data``), so :meth:`DecisionRecord.from_decision`
takes any object shaped like :class:`llmroute.router.decision.Decision` (see :class:`DecisionLike`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from llmroute.data.long_text import head_and_tail


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh decision or feedback id (uuid4 hex, 32 characters)."""
    return uuid.uuid4().hex


def new_decision_id(now: datetime | None = None) -> str:
    """A fresh decision id: a UUID version 7 string (RFC 9562) whose first 48 bits are the Unix time in
    milliseconds, so :func:`decision_id_time` can tell when it was issued without a database read."""
    ms = int((now or utcnow()).timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(uuid.uuid4().bytes, "big")
    value = (ms << 80) | (0x7 << 76) | (((rand >> 64) & 0xFFF) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def decision_id_time(decision_id: str) -> datetime | None:
    """When a :func:`new_decision_id` id was issued; None for any other string."""
    try:
        u = uuid.UUID(decision_id)
    except ValueError:
        return None
    if u.version != 7:
        return None
    return datetime.fromtimestamp((u.int >> 80) / 1000, UTC)


def prompt_sha256(prompt: str) -> str:
    """Hex SHA-256 of the UTF-8 prompt: the key that survives redaction (a lone surrogate, which UTF-8
    cannot encode, is hashed as its surrogate-escaped bytes rather than failing)."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


LOGGED_PROMPT_HEAD_CHARS = 16_000
LOGGED_PROMPT_TAIL_CHARS = 16_000


def logged_prompt(prompt: str) -> str:
    """The text of ``prompt`` a decision record keeps: the whole prompt up to 32,000 characters; of a
    longer one its first and last 16,000 characters joined by an elision line
    (:func:`llmroute.data.long_text.head_and_tail`).

    That is everything routing reads of a prompt (:func:`llmroute.router.text.focus_text` searches
    only the first and last 16,000 characters of a longer one, so it gives the same focus text, and
    the same embedding, for the kept text as for the whole prompt), and logging a 1 MB prompt then
    costs what logging a 32 KB one does instead of holding the spool, the database and the other
    requests' CPU for milliseconds. What a kept text does not preserve: its length and token count
    (a replay or retraining from the log sees the ~32,000-character text). The record's
    ``prompt_sha256`` is always of the whole prompt."""
    return head_and_tail(prompt, LOGGED_PROMPT_HEAD_CHARS, LOGGED_PROMPT_TAIL_CHARS)


REASON_KINDS = ("router", "explored", "constraint", "fallback", "static")
"""Why a decision served its model: the router's own pick (``router``); an exploration draw
(``explored``); the router's pick while the request's constraints excluded a cheaper model
(``constraint``); no model cleared the bar, so the best expected quality was served (``fallback``);
an A/B arm's static rule (``static``)."""


TARGET_KINDS = ("relative", "absolute")
"""Kinds of a logged quality target (``router.decision.QualityTarget.kind``): a share of the best
model's quality, or a quality level."""


def target_fields(target: object) -> tuple[float | None, str | None]:
    """``(value, kind)`` of a quality target (anything with a numeric ``value`` and a ``kind`` of
    :data:`TARGET_KINDS`, like ``router.decision.QualityTarget``), exact; ``(None, None)`` for None
    or anything else."""
    value, kind = getattr(target, "value", None), getattr(target, "kind", None)
    if kind in TARGET_KINDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), kind
    return None, None


@dataclass(frozen=True)
class LoggedCandidate:
    """One candidate model as the router scored it."""

    model: str
    probability: float
    expected_cost_usd: float
    eligible: bool
    excluded_by: str | None = None

    @classmethod
    def coerce(cls, c: Any) -> LoggedCandidate:
        """From a ``router.decision.Candidate``, a mapping with the same keys, or a LoggedCandidate."""
        if isinstance(c, LoggedCandidate):
            return c
        if type(c).__name__ == "Candidate":  # router.decision.Candidate, the common case (data never imports router)
            return cls(str(c.model), float(c.probability), float(c.expected_cost_usd), bool(c.eligible), c.excluded_by)
        get: Callable[..., Any] = c.get if isinstance(c, Mapping) else (lambda k, d=None: getattr(c, k, d))
        return cls(
            model=str(get("model")),
            probability=float(get("probability")),
            expected_cost_usd=float(get("expected_cost_usd", get("expected_cost", 0.0))),
            eligible=bool(get("eligible", True)),
            excluded_by=get("excluded_by"),
        )


@dataclass(frozen=True)
class DecisionRecord:
    """One routing decision (``/route`` or the decision behind a proxied call).

    ``prompt`` is ``None`` when redacted, and a prompt over 32,000 characters is kept as its head and
    tail (:func:`logged_prompt`); ``prompt_sha256`` (of the whole prompt) and ``embedding`` are always kept.
    ``propensity`` is the probability with which the policy chose ``chosen_model`` (1.0 for a
    deterministic router; below 1 under exploration), needed for off-policy evaluation.
    ``source`` says which endpoint made the decision (``route``, ``chat``, ...). ``reason`` is the
    decision's own explanation (the rule, what excluded which model -- data policy, unavailable
    providers -- and a ``prefer_local`` choice); None in rows logged before it was kept.
    ``constraints`` is the request's constraints as JSON; a decision made under targeted exploration
    adds the logging policy's exploration under the key ``"exploration"`` (mode, top_k, share and the
    models an explored draw could serve; see :mod:`llmroute.serving.exploration`), which no constraint
    field is named, so the log needs no extra column.
    ``target`` is the quality target's text as the service shows it (``str(target)``, rounded: a
    relative target to a whole percent); ``target_value`` and ``target_kind`` (``relative`` or
    ``absolute``) are the target itself, exact (None in rows logged before they were kept, and when
    the decision had no target).
    """

    decision_id: str
    created_at: datetime
    prompt_sha256: str
    router_version: str
    chosen_model: str
    candidates: tuple[LoggedCandidate, ...] = ()
    constraints: Mapping[str, Any] = field(default_factory=dict)
    propensity: float = 1.0
    prompt: str | None = None
    embedding: tuple[float, ...] | None = None
    embedder: str | None = None
    tenant: str | None = None
    user: str | None = None
    arm: str | None = None
    target: str | None = None
    rule: str | None = None
    knob: float | None = None
    task_hint: str | None = None
    source: str = "route"
    latency_ms: float | None = None
    reason_kind: str | None = None
    best_cost_usd: float | None = None
    seed_cost_usd: float | None = None
    reason: str | None = None
    target_value: float | None = None
    target_kind: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.propensity <= 1.0:
            raise ValueError(f"decision {self.decision_id}: propensity must be in (0, 1], got {self.propensity}")
        if (self.target_value is None) != (self.target_kind is None) or (
                self.target_kind is not None and self.target_kind not in TARGET_KINDS):
            raise ValueError(f"decision {self.decision_id}: target_value and target_kind go together, the kind one "
                             f"of {TARGET_KINDS}; got {self.target_value!r} and {self.target_kind!r}")
        if self.reason_kind is not None and self.reason_kind not in REASON_KINDS:
            raise ValueError(f"decision {self.decision_id}: reason_kind must be one of {REASON_KINDS}, "
                             f"got {self.reason_kind!r}")

    def chosen_expected_cost(self) -> float | None:
        """The served model's expected cost at decision time (None when it is not among the candidates)."""
        return next((c.expected_cost_usd for c in self.candidates if c.model == self.chosen_model), None)

    def redacted(self) -> DecisionRecord:
        """The same record without the prompt text (hash and embedding stay)."""
        return self if self.prompt is None else dataclasses.replace(self, prompt=None)

    @classmethod
    def from_decision(
        cls,
        decision: DecisionLike,
        *,
        prompt: str,
        decision_id: str | None = None,
        constraints: Any = None,
        embedding: Sequence[float] | None = None,
        embedder: str | None = None,
        tenant: str | None = None,
        user: str | None = None,
        arm: str | None = None,
        propensity: float = 1.0,
        source: str = "route",
        redact: bool = False,
        created_at: datetime | None = None,
    ) -> DecisionRecord:
        """Build the record for a ``router.decision.Decision``; ``constraints`` may be a dataclass or mapping."""
        if constraints is None:
            cons: dict[str, Any] = {}
        elif dataclasses.is_dataclass(constraints) and not isinstance(constraints, type):
            cons = _fields_of(constraints)
        else:
            cons = dict(constraints)
        exploration = (getattr(decision, "extra", None) or {}).get("exploration")
        if exploration is not None:
            cons["exploration"] = dict(exploration)
        target_value, target_kind = target_fields(decision.target)
        return cls(
            decision_id=decision_id or new_id(),
            created_at=created_at or utcnow(),
            prompt=None if redact else logged_prompt(prompt),
            prompt_sha256=prompt_sha256(prompt),
            embedding=None if embedding is None else tuple(map(float, embedding)),
            embedder=embedder,
            router_version=decision.router_version,
            chosen_model=decision.model,
            candidates=tuple(LoggedCandidate.coerce(c) for c in decision.candidates),
            constraints=cons,
            propensity=propensity,
            tenant=tenant,
            user=user,
            arm=arm,
            target=None if decision.target is None else str(decision.target),
            target_value=target_value,
            target_kind=target_kind,
            rule=decision.rule,
            knob=decision.knob,
            task_hint=decision.task_hint,
            source=source,
            reason=getattr(decision, "reason", None),
        )


def _fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, one level deep: what ``dataclasses.asdict`` gives for a record of
    plain values and tuples (constraints), without its recursive deep copy, which cost more than the
    rest of building a decision record."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


class DecisionLike(Protocol):
    """The attributes of ``router.decision.Decision`` the log reads (read-only: a decision is frozen)."""

    @property
    def model(self) -> str: ...
    @property
    def candidates(self) -> Sequence[Any]: ...
    @property
    def rule(self) -> str: ...
    @property
    def knob(self) -> float: ...
    @property
    def router_version(self) -> str: ...
    @property
    def target(self) -> object:  # the quality target; the log stores its text, ``str(target)`` (None: none)
        ...
    @property
    def task_hint(self) -> str | None: ...


@dataclass(frozen=True)
class OutcomeRecord:
    """What happened when the chosen model was called (one per proxied decision).

    ``attempts`` lists the cascade's calls in order (each a JSON-able mapping, e.g. model, ok,
    error, latency_ms, cost_usd); ``model`` is the model whose answer was returned.
    """

    decision_id: str
    model: str
    ok: bool
    created_at: datetime = field(default_factory=utcnow)
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    attempts: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class FeedbackRecord:
    """A quality score for a decision's answer, sent later through ``/feedback``.

    Several may arrive for one decision; readers use the latest (by ``created_at``).
    """

    decision_id: str
    quality: float
    comment: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    feedback_id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        if not 0.0 <= self.quality <= 1.0:
            raise ValueError(f"feedback for decision {self.decision_id}: quality must be in [0, 1], got {self.quality}")


LogRecord = DecisionRecord | OutcomeRecord | FeedbackRecord
