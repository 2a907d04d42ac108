"""Data policy: where a request's prompt may be sent.

Three policies, from loosest to strictest (:data:`DATA_POLICIES`):

* ``any``: every model the other constraints allow.
* ``prefer_local``: a local model (catalog ``local: true``) when its predicted chance of meeting the
  target clears the bar of the request's target (the threshold rule's probability bar for that target,
  or the request's ``confidence``), else whatever the router's rule picks, API models included
  (:func:`prefer_local`).
* ``local_only``: only local models. An API model is *ineligible* for the request, with the reason
  ``data_policy local_only: ...`` (:func:`policy_exclusion`), so no part of the service that honours
  eligibility -- routing, every cascade escalation, ensembles, exploration, A/B arms -- can pick one.
  A model without a catalog entry counts as not local: the rule fails closed.

A request's policy and its tenant's combine to the stricter of the two (:func:`strictest`): a request
can tighten its tenant's policy, never loosen it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from llmroute.data.catalog import ModelSpec

DATA_POLICIES: tuple[str, ...] = ("any", "prefer_local", "local_only")
POLICY_PREFIX = "data_policy local_only:"


def check_policy(policy: str) -> str:
    """``policy`` itself when it is one of :data:`DATA_POLICIES`; ValueError naming the choices otherwise."""
    if policy not in DATA_POLICIES:
        raise ValueError(f"data_policy must be one of {', '.join(DATA_POLICIES)}; got {policy!r}")
    return policy


def strictest(*policies: str | None) -> str:
    """The strictest of the given policies (None entries are skipped; none at all: ``any``)."""
    given = [check_policy(p) for p in policies if p is not None]
    return max(given, key=DATA_POLICIES.index) if given else "any"


def is_local(spec: ModelSpec | None) -> bool:
    """True only for a catalog model marked ``local: true`` (unknown models are not local)."""
    return spec is not None and spec.local


def policy_exclusion(policy: str, spec: ModelSpec | None) -> str | None:
    """Why ``policy`` forbids the model of ``spec`` (None: allowed). Only ``local_only`` forbids."""
    if policy != "local_only" or is_local(spec):
        return None
    what = "has no catalog entry, so it is not known to be local" if spec is None else (
        f"is not a local model (provider {spec.provider}): the prompt would leave our machines"
    )
    return f"{POLICY_PREFIX} {what}"


def prefer_local(
    models: Sequence[str],
    specs: Sequence[ModelSpec | None],
    probs: Sequence[float],
    costs: Sequence[float],
    eligible: Sequence[bool],
    chosen: int,
    bar: float,
) -> tuple[int, str]:
    """Under ``prefer_local``: the model to serve instead of ``chosen`` and why.

    ``chosen`` itself when it is local. Otherwise the cheapest eligible local model whose probability
    is at least ``bar`` (ties: the more probable); when none reaches it, ``chosen`` stays and the
    reason names the best local model's probability, so the decision says why the prompt goes to an API.
    """
    if is_local(specs[chosen]):
        return chosen, f"prefer_local: {models[chosen]} is local"
    local = [i for i in range(len(models)) if eligible[i] and is_local(specs[i])]
    clearing = [i for i in local if probs[i] >= bar]
    if clearing:
        j = min(clearing, key=lambda i: (costs[i], -probs[i]))
        return j, (
            f"prefer_local: local model {models[j]} reaches P(meets target) {probs[j]:.3f} >= {bar:.3f}, "
            f"so it is served instead of the rule's choice {models[chosen]}"
        )
    if not local:
        return chosen, f"prefer_local: no local model is eligible, so {models[chosen]} (API) is served"
    best = max(local, key=lambda i: probs[i])
    return chosen, (
        f"prefer_local: no eligible local model reaches P(meets target) >= {bar:.3f} (best: {models[best]} "
        f"at {probs[best]:.3f}), so {models[chosen]} (API) is served"
    )


class _Attempt(Protocol):
    @property
    def model(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error_kind(self) -> str | None: ...


def api_fallback(
    attempts: Sequence[_Attempt], final_model: str | None, specs: Mapping[str, ModelSpec | None]
) -> dict[str, object] | None:
    """When local models failed and an API model answered: ``{"from": [{"model", "error_kind"}...],
    "to": final_model}`` (what the response reports as the fallback to API); None otherwise."""
    if final_model is None or is_local(specs.get(final_model)):
        return None
    failed = [
        {"model": a.model, "error_kind": a.error_kind or "error"}
        for a in attempts if not a.ok and is_local(specs.get(a.model))
    ]
    return {"from": failed, "to": final_model} if failed else None
