"""What a router would have chosen for each logged request (a deterministic target policy).

The router answers the logged request as the service would have: the same prompt, the same
constraints (eligibility), the same task hint, and the same quality target as logged (or the same
confidence bar, for requests routed with ``confidence``; the router's default target when the logged
one cannot be read). The router's default rule is used (the log does not say whether the rule was
requested or defaulted). A request that excludes every one of the router's models gets ``None``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from llmroute.offpolicy.logged import LoggedTraffic
from llmroute.router.decision import Constraints, Decision, QualityTarget, RouteQuery
from llmroute.router.decision_rules import CONFIDENCE_RULE
from llmroute.router.embedder import EmbeddingCache
from llmroute.router.router import Router
from llmroute.router.text import focus_text

_FIELDS = {f.name for f in dataclasses.fields(Constraints)}


def parse_logged_target(text: str | None, exact: tuple[float, str] | None = None) -> QualityTarget | None:
    """A logged decision's quality target: ``exact`` (the ``target_value`` and ``target_kind``
    columns, logged from revision 0007 on) when given, else the ``target`` text parsed
    (:meth:`QualityTarget.from_str`; a relative target is rounded to a whole percent there)."""
    if exact is not None:
        return QualityTarget(exact[0], exact[1])
    return QualityTarget.from_str(text)


def logged_constraints(raw: dict) -> Constraints:
    """The request's :class:`Constraints` from its logged JSON (unknown keys ignored)."""
    kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in _FIELDS}
    return Constraints(**kw)


@dataclasses.dataclass(frozen=True)
class RouterPredictions:
    """A router's probabilities and expected costs on the logged prompts, and its picks."""

    models: tuple[str, ...]
    probs: np.ndarray
    expected_cost: np.ndarray
    picks: np.ndarray  # object array of model names (None: no eligible model)
    embeddings: np.ndarray
    input_tokens: np.ndarray


def _query(traffic: LoggedTraffic, i: int) -> RouteQuery:
    """Logged request ``i`` as the router is asked it again (see module docstring)."""
    target = parse_logged_target(traffic.targets[i], traffic.exact_targets[i] if traffic.exact_targets else None)
    knob = traffic.knobs[i]
    bar = float(knob) if target is None and traffic.rules[i] == CONFIDENCE_RULE and knob is not None else None
    return RouteQuery(
        traffic.prompts[i], logged_constraints(traffic.constraints[i]), target, bar, traffic.task_hints[i]
    )


def router_picks(router: Router, traffic: LoggedTraffic, cache_path: Path | None = None) -> RouterPredictions:
    """``router``'s choice for every logged request (see module docstring)."""
    prompts = list(traffic.prompts)
    emb = None
    if cache_path is not None:
        emb = EmbeddingCache(cache_path).encode(router.embedder, [focus_text(p) for p in prompts], progress=False)
    prepared = router.prepare(prompts, embeddings=emb)
    hints = list(traffic.task_hints)
    probs, costs = router.predict(prepared, hints if any(h is not None for h in hints) else None)
    queries = [_query(traffic, i) for i in range(len(prompts))]
    decided = router.decide_all(queries, probs, costs, prepared.input_tokens)
    picks = np.array([d.model if isinstance(d, Decision) else None for d in decided], dtype=object)
    return RouterPredictions(router.models, probs, costs, picks, prepared.embeddings, prepared.input_tokens)
