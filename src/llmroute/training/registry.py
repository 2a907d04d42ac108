"""The router registry lifecycle: gated promotion and rollback (moving the `champion` alias).

Every trained router is a version of one registered model (``Settings.registered_model``, default
``llmroute``); training points the ``challenger`` alias at it. Promotion moves the ``champion`` alias,
never a stage:

* ``promote`` scores the challenger and the current champion on the *same* held-out logs
  (:mod:`llmroute.experiments.compare`) and moves ``champion`` to the challenger only when the
  challenger's AIQ is strictly higher **and** its target attainment is not worse: it meets its default
  target on those logs, or falls short of it by no more than the champion falls short of its own.
  With no champion yet, the first challenger is promoted.
  ``gate="offpolicy"`` instead judges both routers on logged production traffic by off-policy
  evaluation: the challenger must not be worse in doubly-robust quality (lower end of the paired
  interval above ``-tolerance``), must be better or cheaper, and the log must hold enough matched
  decisions (:mod:`llmroute.offpolicy.gate`). ``force=True`` (with a reason) overrides a
  refusal; the reason is recorded as a version tag. The promoted version gets a ``previous_champion``
  tag and loses the ``challenger`` alias.
* ``rollback`` moves ``champion`` to the current champion's ``previous_champion`` (repeatable: each
  champion remembers the one it replaced).

Errors are :class:`~llmroute.artifacts.registry.RegistryError` and name what was asked for (alias, version,
store URI). Reading the registry (URIs, versions, listing) and loading a version live below, in
:mod:`llmroute.artifacts`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmroute.artifacts.loading import load_router
from llmroute.artifacts.registry import (
    ModelRef,
    RegistryError,
    aliases_of,
    registered_model,
    registry_client,
    resolve_version,
)
from llmroute.artifacts.store import CHALLENGER, CHAMPION
from llmroute.config import Settings
from llmroute.data.decision_log.opening import open_decision_log
from llmroute.data.decision_log.store import mask_url
from llmroute.experiments.compare import Comparison, compare_routers
from llmroute.offpolicy import DEFAULT_TOLERANCE, MIN_MATCHES
from llmroute.offpolicy.evaluate import evaluate_offpolicy
from llmroute.offpolicy.gate import offpolicy_verdict
from llmroute.offpolicy.logged import logged_traffic
from llmroute.router.router import Router

PREVIOUS_CHAMPION = "previous_champion"


# ---- promotion and rollback ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    forced: bool
    challenger_version: str
    champion_version: str | None
    comparison: Comparison | None
    reason: str | None
    message: str
    gate: str = "benchmark"
    offpolicy: Any = None  # llmroute.offpolicy.evaluate.OffPolicyReport for gate "offpolicy"


GATES = ("benchmark", "offpolicy")


@dataclass(frozen=True)
class OffPolicyGateOptions:
    """Where the off-policy gate reads logged traffic, and its rule's parameters (:mod:`llmroute.offpolicy.gate`)."""

    production: str
    since: Any = None  # datetime | None
    until: Any = None
    tolerance: float = DEFAULT_TOLERANCE
    min_matches: int = MIN_MATCHES
    n_boot: int = 1000


def _benchmark_gate(settings: Settings, challenger: Router, champion: Router | None, test_logs: Path,
                    labels: tuple[str, str], echo: Callable[[str], None]) -> tuple[bool, str, dict[str, str], Comparison]:
    comparison = compare_routers(challenger, champion, test_logs, settings.cache_dir / "embeddings.sqlite", labels=labels)
    echo(comparison.table())
    wins = comparison.challenger_wins
    if wins:
        verdict = "the challenger has the higher AIQ and its target attainment is not worse"
    else:
        why = []
        if not comparison.aiq_better:
            why.append("its AIQ is not higher")
        if not comparison.attainment_not_worse:
            why.append("it falls further short of its default target than the champion")
        verdict = "the challenger does not beat the champion: " + " and ".join(why)
    tags = {
        "promotion.test_logs": str(Path(test_logs).resolve()),
        "promotion.prompts": str(comparison.prompts),
        "promotion.challenger_aiq": f"{comparison.challenger.aiq:.6f}",
    }
    if comparison.champion is not None:
        tags["promotion.champion_aiq"] = f"{comparison.champion.aiq:.6f}"
    return wins, verdict, tags, comparison


def _offpolicy_gate(settings: Settings, challenger: Router, champion: Router | None, opts: OffPolicyGateOptions,
                    labels: tuple[str, str], echo: Callable[[str], None]) -> tuple[bool, str, dict[str, str], Any]:
    store = open_decision_log(opts.production)
    try:
        traffic = logged_traffic(store.joined(since=opts.since, until=opts.until))
    finally:
        store.close()
    for line in traffic.report_lines():
        echo(line)
    report = evaluate_offpolicy(traffic, challenger, champion, settings.cache_dir / "embeddings.sqlite",
                                n_boot=opts.n_boot, labels=labels)
    echo(report.table())
    verdict = offpolicy_verdict(report, opts.tolerance, opts.min_matches)
    text = verdict.describe() if verdict.passes else "the challenger does not pass the off-policy gate: " + verdict.describe()
    dq, dc = report.dr_quality_difference, report.dr_cost_difference
    tags = {
        "promotion.gate": "offpolicy",
        "promotion.decision_log": mask_url(opts.production),
        "promotion.offpolicy_decisions": str(report.decisions_used),
        "promotion.offpolicy_matches": str(report.challenger.quality.matches),
        "promotion.dr_quality_diff": f"{dq.value:.6f} [{dq.lo:.6f}, {dq.hi:.6f}]" if dq.lo is not None else str(dq.value),
        "promotion.dr_cost_diff": f"{dc.value:.8f} [{dc.lo:.8f}, {dc.hi:.8f}]" if dc.lo is not None else str(dc.value),
        "promotion.tolerance": f"{opts.tolerance:g}",
    }
    if opts.since is not None:
        tags["promotion.since"] = opts.since.isoformat()
    if opts.until is not None:
        tags["promotion.until"] = opts.until.isoformat()
    return verdict.passes, text, tags, report


def promote(
    settings: Settings,
    test_logs: Path | None = None,
    force: bool = False,
    reason: str | None = None,
    echo: Callable[[str], None] = print,
    *,
    gate: str = "benchmark",
    offpolicy: OffPolicyGateOptions | None = None,
) -> PromotionResult:
    """Move ``champion`` to the challenger if it passes the gate (see module docstring).

    ``gate="benchmark"``: beat the champion on ``test_logs``; ``gate="offpolicy"``: pass the off-policy
    rule on the logged production traffic named by ``offpolicy`` (:mod:`llmroute.offpolicy.gate`).
    """
    if force and not (reason and reason.strip()):
        raise ValueError("a forced promotion needs a reason (--reason \"...\")")
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {', '.join(GATES)}")
    if gate == "benchmark" and test_logs is None:
        raise ValueError("the benchmark gate needs held-out logs (--logs)")
    if gate == "offpolicy" and offpolicy is None:
        raise ValueError("the off-policy gate needs the decision log (--from-production)")
    name = settings.registered_model
    with registry_client(settings, f"reading the aliases of '{name}'") as (client, uri):
        aliases = aliases_of(registered_model(client, name, uri))
    if CHALLENGER not in aliases:
        raise RegistryError(
            f"alias '{CHALLENGER}' of registered model '{name}' does not exist in {uri}: "
            "train a router first (llmroute train), or it was already promoted"
        )
    ch_v, champ_v = aliases[CHALLENGER], aliases.get(CHAMPION)
    if ch_v == champ_v:
        raise RegistryError(f"version {ch_v} of '{name}' is already the champion")
    challenger = load_router(f"models:/{name}/{ch_v}", settings)
    champion = load_router(f"models:/{name}/{champ_v}", settings) if champ_v else None
    labels = (f"champion v{champ_v}", f"challenger v{ch_v}")
    comparison: Comparison | None = None
    report: Any = None
    if gate == "benchmark":
        assert test_logs is not None
        wins, verdict, gate_tags, comparison = _benchmark_gate(settings, challenger, champion, test_logs, labels, echo)
    else:
        assert offpolicy is not None
        wins, verdict, gate_tags, report = _offpolicy_gate(settings, challenger, champion, offpolicy, labels, echo)
    if champ_v is None:
        wins, verdict = True, "no champion yet: the challenger becomes the first champion"
    promoted = wins or force
    tags = {
        **gate_tags,
        "promotion.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "promotion.decision": "promoted" if promoted else "refused",
    }
    if champ_v is not None:
        tags["promotion.champion_version"] = str(champ_v)
    forced = promoted and not wins
    if forced:
        tags["promotion.forced"] = "true"
    if reason:
        tags["promotion.reason"] = reason.strip()
    with registry_client(settings, f"promoting version {ch_v} of '{name}'") as (client, uri):
        for k, v in tags.items():
            client.set_model_version_tag(name, ch_v, k, v)
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, ch_v)
            if champ_v is not None:
                client.set_model_version_tag(name, ch_v, PREVIOUS_CHAMPION, champ_v)
            client.delete_registered_model_alias(name, CHALLENGER)
    if promoted:
        message = f"promoted version {ch_v} of '{name}' to {CHAMPION}" + (
            f" (forced: {reason.strip()}; {verdict})" if forced and reason else f": {verdict}"
        )
    else:
        message = f"refused to promote version {ch_v} of '{name}': {verdict}; use --force --reason to override"
    return PromotionResult(promoted, forced, ch_v, champ_v, comparison, reason, message, gate, report)


@dataclass(frozen=True)
class RollbackResult:
    from_version: str
    to_version: str
    message: str


def rollback(settings: Settings) -> RollbackResult:
    """Move ``champion`` back to the version it replaced (the current champion's ``previous_champion``)."""
    name = settings.registered_model
    with registry_client(settings, f"rolling back '{name}'") as (client, uri):
        aliases = aliases_of(registered_model(client, name, uri))
        if CHAMPION not in aliases:
            raise RegistryError(f"alias '{CHAMPION}' of registered model '{name}' does not exist in {uri}: nothing to roll back")
        current = aliases[CHAMPION]
        mv = client.get_model_version(name, current)
        previous = (mv.tags or {}).get(PREVIOUS_CHAMPION)
        if not previous:
            raise RegistryError(
                f"champion version {current} of '{name}' has no previous champion (it was the first one promoted)"
            )
        resolve_version(client, ModelRef(name, version=previous), uri)
        client.set_registered_model_alias(name, CHAMPION, previous)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        client.set_model_version_tag(name, current, "rolled_back", f"{at} -> version {previous}")
    return RollbackResult(current, previous, f"{CHAMPION} of '{name}' moved back from version {current} to {previous}")


