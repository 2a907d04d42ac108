"""The router registry lifecycle: load by alias or version, gated promotion, rollback, listing.

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

Errors are :class:`RegistryError` and name what was asked for (alias, version, store URI).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llmroute.config import Settings
from llmroute.experiments.compare import Comparison, compare_routers
from llmroute.offpolicy import DEFAULT_TOLERANCE, MIN_MATCHES
from llmroute.router.embedder import Embedder
from llmroute.router.router import Router
from llmroute.training.manifest import DamagedArtifactError, load_verified_router
from llmroute.training.tracking import CHALLENGER, CHAMPION, mlflow_session, resolve_tracking_uri

if TYPE_CHECKING:
    from llmroute.router.answer_scorer import ResponseScorer

PREVIOUS_CHAMPION = "previous_champion"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))/?$")


class RegistryError(RuntimeError):
    """A registry request failed; the message names the model, alias/version and store."""


@dataclass(frozen=True)
class ModelRef:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""

    name: str
    alias: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        what = f"alias '{self.alias}'" if self.alias else f"version {self.version}"
        return f"{what} of registered model '{self.name}'"


def parse_model_uri(uri: str) -> ModelRef:
    m = _URI.match(uri.strip())
    if not m:
        raise RegistryError(
            f"'{uri}' is not a registry model URI; expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    return ModelRef(m["name"], m["alias"], m["version"])


def _unreachable(message: str) -> bool:
    return any(s in message for s in ("failed with exception", "Max retries exceeded", "Connection refused"))


@contextmanager
def registry_client(settings: Settings, doing: str) -> Iterator[tuple[Any, str]]:
    """An MlflowClient on the configured store; MLflow failures become :class:`RegistryError`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(settings)
    with mlflow_session(uri):
        try:
            yield MlflowClient(tracking_uri=uri, registry_uri=uri), uri
        except MlflowException as exc:
            msg = exc.message.split(" (Caused by")[0]
            if _unreachable(exc.message):
                raise RegistryError(f"cannot reach the MLflow tracking server at {uri} while {doing}: {msg}") from exc
            raise RegistryError(f"MLflow store {uri}: {doing} failed: {msg}") from exc


def _registered_model(client: Any, name: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"registered model '{name}' does not exist in {uri}: train a router first (llmroute train)"
            ) from exc
        raise


def _aliases(rm: Any) -> dict[str, str]:
    return {str(a): str(v) for a, v in (rm.aliases or {}).items()}


def resolve_version(client: Any, ref: ModelRef, uri: str) -> Any:
    """The model version ``ref`` names, or a :class:`RegistryError` naming it."""
    from mlflow.exceptions import MlflowException

    rm = _registered_model(client, ref.name, uri)
    aliases = _aliases(rm)
    if ref.alias is not None:
        if ref.alias not in aliases:
            known = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise RegistryError(f"{ref.describe()} does not exist in {uri} (aliases: {known})")
        version = aliases[ref.alias]
    else:
        version = str(ref.version)
    try:
        return client.get_model_version(ref.name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{ref.describe()} does not exist in {uri}") from exc
        raise


def _router_folder(model_dir: Path) -> Path:
    """The router artifact inside a downloaded pyfunc model directory."""
    mlmodel = model_dir / "MLmodel"
    if mlmodel.exists():
        try:
            conf = yaml.safe_load(mlmodel.read_text())
            rel = conf["flavors"]["python_function"]["artifacts"]["router"]["path"]
            return model_dir / rel
        except (yaml.YAMLError, KeyError, TypeError):
            pass
    found = sorted(model_dir.rglob("router.json"))
    return found[0].parent if found else model_dir / "artifacts" / "router"


def load_router_uri(uri: str, settings: Settings) -> Router:
    """Load the router behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    The artifact is downloaded to a temporary folder, its checksums verified, the embedder named in
    router.json loaded (its fingerprint must match); the router is returned under the version ``<name>/<version>``.
    """
    return load_served_uri(uri, settings, with_scorer=False)[0]


def load_served_uri(uri: str, settings: Settings, with_scorer: bool = True,
                    reuse: Embedder | None = None) -> tuple[Router, ResponseScorer | None]:
    """:func:`load_router_uri`, and the post-call response scorer registered with it (the router
    artifact's ``scorer/`` folder, covered by the same checksums), or None when it has none or
    ``with_scorer`` is False. The scorer shares the router's embedder. ``reuse``: see
    :func:`~llmroute.training.manifest.load_verified_router`."""
    with tempfile.TemporaryDirectory(prefix="llmroute-model-") as tmp:
        got = download_version(uri, settings, Path(tmp))
        router, scorer = load_downloaded(got, settings, with_scorer, reuse)
    return router, scorer


@dataclass(frozen=True)
class DownloadedVersion:
    """A registry version's router artifact on local disk: ``folder`` (holding router.json), the
    version's name ``<name>/<version>`` and a ``label`` naming it for messages."""

    folder: Path
    version: str
    label: str


def download_version(uri: str, settings: Settings, dst: Path) -> DownloadedVersion:
    """Download the router artifact of the version ``uri`` names into ``dst`` (not yet verified: see
    :func:`load_downloaded`); failures are :class:`RegistryError` naming the version."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    ref = parse_model_uri(uri)
    with registry_client(settings, f"loading {uri}") as (client, tracking):
        mv = resolve_version(client, ref, tracking)
        label = f"{uri} (version {mv.version} of '{ref.name}' in {tracking})"
        try:
            local = download_artifacts(
                artifact_uri=f"models:/{ref.name}/{mv.version}", dst_path=str(dst), tracking_uri=tracking
            )
        except (OSError, MlflowException) as exc:
            text = getattr(exc, "message", str(exc))
            if _unreachable(text):
                raise
            raise RegistryError(f"{label}: the model artifact cannot be downloaded: {text}") from exc
    return DownloadedVersion(_router_folder(Path(local)), f"{ref.name}/{mv.version}", label)


def load_downloaded(got: DownloadedVersion, settings: Settings, with_scorer: bool = True,
                    reuse: Embedder | None = None) -> tuple[Router, ResponseScorer | None]:
    """The router (checksums verified, version set to ``<name>/<version>``) and, when ``with_scorer``,
    its registered scorer from a :func:`download_version` folder."""
    try:
        router = load_verified_router(got.folder, settings.embedders_dir, got.label, reuse)
    except DamagedArtifactError as exc:
        raise RegistryError(str(exc)) from exc
    scorer = _registered_scorer(got.folder, router, got.label) if with_scorer else None
    return router.with_version(got.version), scorer


CHECKED_TAG = "llmroute.isolated_check_passed"


def version_tag(version: str, tag: str, settings: Settings) -> str | None:
    """The value of ``tag`` on the registry version ``<name>/<version>``, or None when it has none."""
    name, number = version.rsplit("/", 1)
    with registry_client(settings, f"reading the tags of {version}") as (client, _):
        return client.get_model_version(name, number).tags.get(tag)


def set_version_tag(version: str, tag: str, value: str, settings: Settings) -> None:
    """Set ``tag`` on the registry version ``<name>/<version>`` (:class:`RegistryError` on failure)."""
    name, number = version.rsplit("/", 1)
    with registry_client(settings, f"tagging {version}") as (client, _):
        client.set_model_version_tag(name, number, tag, value)


def _registered_scorer(folder: Path, router: Router, label: str) -> ResponseScorer | None:
    """The scorer in a downloaded (already checksum-verified) router folder, read into memory."""
    from llmroute.training.scorer import scorer_in

    try:
        return scorer_in(folder, router.embedder)
    except Exception as exc:  # LightGBM, NumPy and JSON each raise their own errors
        raise RegistryError(f"{label}: the response scorer in the artifact cannot be loaded: {type(exc).__name__}: {exc}") from exc


def try_reload(current: Router, uri: str, settings: Settings) -> tuple[Router, str | None]:
    """For a running service: the router at ``uri``, or ``current`` and the error when loading fails."""
    try:
        return load_router_uri(uri, settings), None
    except Exception as exc:  # noqa: BLE001 - whatever failed, the service keeps routing with `current`
        return current, f"{type(exc).__name__}: {exc}"


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
    from llmroute.data.decision_log.store import mask_url
    from llmroute.offpolicy.evaluate import evaluate_offpolicy
    from llmroute.offpolicy.gate import offpolicy_verdict
    from llmroute.offpolicy.logged import logged_traffic
    from llmroute.training.retrain import open_decision_log

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
        aliases = _aliases(_registered_model(client, name, uri))
    if CHALLENGER not in aliases:
        raise RegistryError(
            f"alias '{CHALLENGER}' of registered model '{name}' does not exist in {uri}: "
            "train a router first (llmroute train), or it was already promoted"
        )
    ch_v, champ_v = aliases[CHALLENGER], aliases.get(CHAMPION)
    if ch_v == champ_v:
        raise RegistryError(f"version {ch_v} of '{name}' is already the champion")
    challenger = load_router_uri(f"models:/{name}/{ch_v}", settings)
    champion = load_router_uri(f"models:/{name}/{champ_v}", settings) if champ_v else None
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
        aliases = _aliases(_registered_model(client, name, uri))
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


# ---- listing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    version: str
    aliases: tuple[str, ...]
    created: str
    router_version: str
    val_aiq: float | None
    test_aiq: float | None
    promotion_aiq: float | None
    data_sha256: str | None
    data_prompts: int | None
    run_id: str | None
    tags: dict[str, str]


def _float(v: str | None) -> float | None:
    try:
        return None if v is None else float(v)
    except ValueError:
        return None


def list_models(settings: Settings) -> list[ModelRow]:
    """Every version of the registered model, newest first, with aliases, key metrics and data fingerprint."""
    name = settings.registered_model
    with registry_client(settings, f"listing versions of '{name}'") as (client, uri):
        by_version: dict[str, list[str]] = {}
        for alias, v in _aliases(_registered_model(client, name, uri)).items():
            by_version.setdefault(v, []).append(alias)
        versions = client.search_model_versions(f"name='{name}'")
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version), reverse=True):
        t = dict(mv.tags or {})
        prompts = t.get("data.prompts")
        rows.append(
            ModelRow(
                version=str(mv.version),
                aliases=tuple(sorted(by_version.get(str(mv.version), []))),
                created=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(mv.creation_timestamp) / 1000)),
                router_version=f"{name}/{mv.version}",
                val_aiq=_float(t.get("metric.val_aiq")),
                test_aiq=_float(t.get("metric.test_aiq")),
                promotion_aiq=_float(t.get("promotion.challenger_aiq")),
                data_sha256=t.get("data.content_sha256"),
                data_prompts=int(prompts) if prompts and prompts.isdigit() else None,
                run_id=mv.run_id or t.get("run_id"),
                tags=t,
            )
        )
    return rows
