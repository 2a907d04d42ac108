"""Reading the router registry: model URIs, the client on the configured store, versions and their listing.

``models:/<name>@<alias>`` or ``models:/<name>/<version>`` names a version of a registered model
(:func:`parse_model_uri`). :func:`registry_client` opens an ``MlflowClient`` on the store
:mod:`llmroute.artifacts.store` resolves and turns every MLflow failure into a :class:`RegistryError`
that names what was asked for and the store. Loading a router from the registry is
:func:`llmroute.artifacts.loading.load_router`; changing aliases (promotion, rollback) is
:mod:`llmroute.training.registry`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmroute.artifacts.store import mlflow_session, resolve_tracking_uri
from llmroute.config import Settings

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
    """The name and alias or version of ``uri``; a :class:`RegistryError` saying the expected forms otherwise."""
    m = _URI.match(uri.strip())
    if not m:
        raise RegistryError(
            f"'{uri}' is not a registry model URI; expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    return ModelRef(m["name"], m["alias"], m["version"])


def unreachable(message: str) -> bool:
    """Whether an MLflow error message says the tracking server could not be reached."""
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
            if unreachable(exc.message):
                raise RegistryError(f"cannot reach the MLflow tracking server at {uri} while {doing}: {msg}") from exc
            raise RegistryError(f"MLflow store {uri}: {doing} failed: {msg}") from exc


def registered_model(client: Any, name: str, uri: str) -> Any:
    """The registered model ``name``, or a :class:`RegistryError` saying to train one first."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"registered model '{name}' does not exist in {uri}: train a router first (llmroute train)"
            ) from exc
        raise


def aliases_of(rm: Any) -> dict[str, str]:
    """Alias -> version of a registered model."""
    return {str(a): str(v) for a, v in (rm.aliases or {}).items()}


def resolve_version(client: Any, ref: ModelRef, uri: str) -> Any:
    """The model version ``ref`` names, or a :class:`RegistryError` naming it."""
    from mlflow.exceptions import MlflowException

    rm = registered_model(client, ref.name, uri)
    aliases = aliases_of(rm)
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


def alias_version(uri: str, alias: str, settings: Settings) -> str | None:
    """``<name>/<version>`` that ``alias`` names on the registered model ``uri`` names (whatever alias or
    version ``uri`` itself gives), or None when the model has no such alias."""
    ref = parse_model_uri(uri)
    with registry_client(settings, f"reading the aliases of '{ref.name}'") as (client, tracking):
        version = aliases_of(registered_model(client, ref.name, tracking)).get(alias)
    return None if version is None else f"{ref.name}/{version}"


def router_folder(model_dir: Path) -> Path:
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


# ---- listing (read-only: the CLI's `llmroute models` and the service's dashboard) -------------------------------------------------------------------------------------------
CHECKED_TAG = "llmroute.isolated_check_passed"
"""The version tag a service sets once the reload's isolated check passed a version (its value: the check's
key), so other replicas reuse the result instead of running the check again."""


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
        for alias, v in aliases_of(registered_model(client, name, uri)).items():
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
