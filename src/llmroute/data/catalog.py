"""The model catalog: which models exist, what they cost per token, what they can do.

The catalog is a YAML file (the bundled one is ``llmroute/catalog/models.yaml``) with a top-level
``models:`` list. It is parsed with pydantic at the edge and turned into frozen
:class:`ModelSpec` records. Unknown values are ``null`` in the file and ``None`` here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Capability = Literal["chat", "code", "reasoning", "math", "long_context", "vision", "multilingual"]
CAPABILITIES: tuple[str, ...] = ("chat", "code", "reasoning", "math", "long_context", "vision", "multilingual")


class CatalogError(ValueError):
    """Bad catalog file: names the file, the model entry and the field."""

    def __init__(self, file: str, model: str | None, field: str | None, message: str) -> None:
        self.file = file
        self.model = model
        self.field = field
        self.message = message
        where = file
        if model is not None:
            where += f", model {model}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ModelSpec:
    """One model the router can choose.

    ``provider`` is who serves the API (``openai``, ``anthropic``, ``nvidia``), the open-weights
    publisher when the host is not fixed, or ``self-hosted``. Prices are USD per 1M tokens;
    ``None`` means unknown. ``local``: the model runs on our own hardware, so a prompt sent to it
    does not leave our machines (what the ``local_only`` data policy relies on). Rate limits
    (optional in the file): requests and tokens per minute the model's endpoint accepts from one
    service process; ``None`` = no limit.
    """

    name: str
    provider: str
    endpoint: str | None
    api_key_env: str | None
    context_window: int | None
    input_price_per_1m: float | None
    output_price_per_1m: float | None
    typical_latency_ms: float | None
    capabilities: tuple[str, ...]
    local: bool
    aliases: tuple[str, ...]
    notes: str | None
    rate_limit_rpm: float | None = None
    rate_limit_tpm: float | None = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    name: Annotated[str, Field(min_length=1)]
    provider: Annotated[str, Field(min_length=1)]
    endpoint: str | None
    api_key_env: str | None
    context_window: Annotated[int, Field(gt=0)] | None
    input_price_per_1m: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None
    output_price_per_1m: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None
    typical_latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None
    capabilities: list[Capability]
    local: bool
    aliases: list[str]
    notes: str | None
    rate_limit_rpm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    rate_limit_tpm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class Catalog(Mapping[str, ModelSpec]):
    """Models by canonical name; ``catalog[name]`` also accepts an alias.

    Iteration yields canonical names only, in file order.
    """

    def __init__(self, models: Iterable[ModelSpec], source: str = "<memory>") -> None:
        self.source = source
        self._models: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for spec in models:
            for key in (spec.name, *spec.aliases):
                if key in self._names:
                    raise CatalogError(
                        source, spec.name, "aliases" if key != spec.name else "name",
                        f"name {key!r} is already used by model {self._names[key]}",
                    )
                self._names[key] = spec.name
            self._models[spec.name] = spec

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._models[self._names[name]]
        except KeyError:
            raise KeyError(f"model {name!r} is not in the catalog ({self.source})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def canonical_name(self, name: str) -> str:
        """The catalog name for ``name`` (itself or an alias); KeyError if unknown."""
        return self[name].name

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD cost of one call from catalog prices; None if a needed price is unknown.

        Raises KeyError for a model that is not in the catalog.
        """
        spec = self[model]
        if spec.input_price_per_1m is None or spec.output_price_per_1m is None:
            return None
        return (input_tokens * spec.input_price_per_1m + output_tokens * spec.output_price_per_1m) / 1e6


def bundled_catalog_path() -> Path:
    """Path of the catalog file shipped with the package."""
    return Path(str(resources.files("llmroute").joinpath("catalog", "models.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog YAML file (``None``: the bundled catalog).

    Raises :class:`CatalogError` naming the file, the model entry and the field at fault.
    """
    file_path = bundled_catalog_path() if path is None else Path(path)
    file = str(file_path)
    specs = [_parse_entry(file, i, item) for i, item in enumerate(_read_entries(file_path))]
    return Catalog(specs, source=file)


def _read_entries(file_path: Path) -> list[Any]:
    """The ``models:`` list of a catalog file; :class:`CatalogError` when it cannot be read or has none."""
    file = str(file_path)
    try:
        raw = yaml.safe_load(file_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(file, None, None, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(file, None, None, f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise CatalogError(file, None, "models", "expected a mapping with a 'models:' list")
    return list(raw["models"])


CATALOG_ENV = "LLMROUTE_CATALOG"
"""Environment variable naming a user catalog file (what ``--catalog`` gives on the command line)."""


def load_merged_catalog(path: str | Path | None = None, *, use_env: bool = True) -> Catalog:
    """The bundled catalog with a user catalog merged over it.

    The user catalog is ``path``, else the file named by ``$LLMROUTE_CATALOG`` (when ``use_env``), else
    none (the bundled catalog alone). It has the bundled file's format; an entry whose ``name`` is a
    bundled model's name or alias overrides only the fields it gives (e.g. just
    ``typical_latency_ms``), any other entry adds a model and must give every field. Raises
    :class:`CatalogError` naming the file, the entry and the field at fault.
    """
    user = path if path is not None else (os.environ.get(CATALOG_ENV) or None if use_env else None)
    bundled = load_catalog()
    return bundled if user is None else merge_catalog(bundled, user)


def merge_catalog(base: Catalog, path: str | Path) -> Catalog:
    """``base`` with the catalog file at ``path`` merged over it (the rule of :func:`load_merged_catalog`)."""
    bundled = base
    file_path = Path(path)
    file = str(file_path)
    merged = {name: bundled[name] for name in bundled}
    for i, item in enumerate(_read_entries(file_path)):
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] in bundled:
            fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(bundled[item["name"]]).items()}
            spec = _parse_entry(file, i, {**fields, **item, "name": fields["name"]})
        else:
            spec = _parse_entry(file, i, item)
        merged[spec.name] = spec
    return Catalog(merged.values(), source=f"{bundled.source} + {file}")


def _parse_entry(file: str, index: int, item: Any) -> ModelSpec:
    label = f"#{index + 1}"
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        label += f" ({item['name']!r})"
    if not isinstance(item, dict):
        raise CatalogError(file, label, None, "expected a mapping of model fields")
    try:
        entry = _Entry.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        got = f", got {err['input']!r}" if err["type"] != "missing" else ""
        raise CatalogError(file, label, field, f"{err['msg']}{got}") from None
    return ModelSpec(
        name=entry.name,
        provider=entry.provider,
        endpoint=entry.endpoint,
        api_key_env=entry.api_key_env,
        context_window=entry.context_window,
        input_price_per_1m=entry.input_price_per_1m,
        output_price_per_1m=entry.output_price_per_1m,
        typical_latency_ms=entry.typical_latency_ms,
        capabilities=tuple(entry.capabilities),
        local=entry.local,
        aliases=tuple(entry.aliases),
        notes=entry.notes,
        rate_limit_rpm=entry.rate_limit_rpm,
        rate_limit_tpm=entry.rate_limit_tpm,
    )
