"""Budgets as users write them: a YAML file (``LLMROUTE_SERVE_BUDGETS``) or the admin API.

A budget file is a mapping with one key, ``budgets``, a list of budgets::

    budgets:
      - name: acme-monthly          # unique; how alerts, metrics and 429s name it
        tenant: acme                # exactly one of tenant / key / user / global: true
        amount_usd: 200
        window: monthly             # daily | weekly | monthly
        rolling: false              # false: calendar-aligned in `timezone`; true: the last 1/7/30 days
        timezone: Europe/Berlin     # IANA name; default UTC
        enforcement: pace           # alert | pace | downgrade | block
        floor: 80%                  # pace: the lowest quality target pacing may use
        thresholds: [0.5, 0.8, 1.0] # alert at these shares of the amount (default)
        forecast: true              # alert when the spend rate will exceed the amount before the window ends
        webhook: https://hooks.example.com/llmroute   # alerts are POSTed here as JSON
      - name: bob-daily
        user: bob
        amount_usd: 5
        window: daily
        enforcement: downgrade
        ceiling_usd: 0.001          # downgrade: only models whose expected cost per call is at most this
        downgrade_at: 0.8           # ... once the spend reaches this share of the amount (default 0.8)

A budget for a tenant, key or user nobody has used yet is fine: it applies when that subject appears.
A key is named by its id, the first 12 hex digits of the key's SHA-256 (:func:`key_id`), never by the
key itself. Errors name the file (or source), the budget and the field, and what was expected.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from llmroute.router.decision import QualityTarget

SCOPES = ("tenant", "key", "user", "global")
WINDOWS = ("daily", "weekly", "monthly")
ENFORCEMENTS = ("alert", "pace", "downgrade", "block")
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)
_FIELDS = {
    "name", "tenant", "key", "user", "global", "amount_usd", "window", "rolling", "timezone", "enforcement",
    "floor", "thresholds", "forecast", "webhook", "ceiling_usd", "downgrade_at",
}


class BudgetFileError(ValueError):
    """A budget file or budget body that cannot be used; the message names the source, budget and field."""


def key_id(api_key: str) -> str:
    """How budgets name an API key: the first 12 hex digits of its SHA-256 (never the key itself)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BudgetSpec:
    """One budget: ``amount_usd`` per window for one subject (``scope`` + ``subject``).

    ``subject`` is the tenant, key id or user; ``"*"`` for the global scope. Invariants (checked by
    :func:`parse_budget`): the amount is finite and >= 0, the window, timezone and enforcement are
    known, thresholds are in (0, 10], ``floor`` only with ``pace``, ``ceiling_usd`` with ``downgrade``.
    """

    name: str
    scope: str
    subject: str
    amount_usd: float
    window: str = "monthly"
    rolling: bool = False
    timezone: str = "UTC"
    enforcement: str = "alert"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    forecast: bool = True
    floor: str | None = None
    ceiling_usd: float | None = None
    downgrade_at: float = 0.8
    webhook: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def floor_target(self) -> QualityTarget | None:
        return QualityTarget.parse(self.floor) if self.floor is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The budget as its YAML/JSON body (what :func:`parse_budget` reads back)."""
        d = asdict(self)
        scope, subject = d.pop("scope"), d.pop("subject")
        out: dict[str, Any] = {"name": d.pop("name")}
        out[scope] = True if scope == "global" else subject
        out.update(d)
        out["thresholds"] = list(self.thresholds)
        return out


def _where(source: str, index: int | None, name: str | None, field: str | None) -> str:
    parts = [source]
    if index is not None:
        parts.append(f"budget #{index + 1}" + (f" ({name!r})" if name else ""))
    elif name:
        parts.append(f"budget {name!r}")
    if field:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


def _number(raw: Any, where: str, *, minimum: float = 0.0, allow_equal: bool = True) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise BudgetFileError(f"{where}: expected a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise BudgetFileError(f"{where}: expected a number, got {raw!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise BudgetFileError(f"{where}: expected a finite number, got {raw!r}")
    if value < minimum or (value == minimum and not allow_equal):
        op = ">=" if allow_equal else ">"
        raise BudgetFileError(f"{where}: expected a number {op} {minimum:g}, got {raw!r}")
    return value


def parse_budget(raw: Any, source: str = "budget", index: int | None = None) -> BudgetSpec:
    """One budget from its mapping (a YAML list item or an admin API body); raises :class:`BudgetFileError`."""
    if not isinstance(raw, Mapping):
        raise BudgetFileError(f"{_where(source, index, None, None)}: expected a mapping of fields, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise BudgetFileError(f"{_where(source, index, None, 'name')}: expected a non-empty name (at most 200 characters)")

    def at(field: str) -> str:
        return _where(source, index, name, field)

    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise BudgetFileError(f"{at(unknown[0])}: unknown field; expected one of {sorted(_FIELDS)}")
    scopes = [s for s in SCOPES if raw.get(s) not in (None, False)]
    if len(scopes) != 1:
        raise BudgetFileError(
            f"{at('tenant/key/user/global')}: expected exactly one of 'tenant', 'key', 'user' or 'global: true', "
            f"got {scopes or 'none'}"
        )
    scope = scopes[0]
    if scope == "global":
        if raw["global"] is not True:
            raise BudgetFileError(f"{at('global')}: expected true, got {raw['global']!r}")
        subject = "*"
    else:
        subject = raw[scope]
        if not isinstance(subject, (str, int)) or isinstance(subject, bool) or not str(subject).strip():
            raise BudgetFileError(f"{at(scope)}: expected a non-empty {scope} name, got {subject!r}")
        subject = str(subject)
    if "amount_usd" not in raw:
        raise BudgetFileError(f"{at('amount_usd')}: missing; expected the USD amount per window")
    amount = _number(raw["amount_usd"], at("amount_usd"))
    window = raw.get("window", "monthly")
    if window not in WINDOWS:
        raise BudgetFileError(f"{at('window')}: unknown window {window!r}; expected one of {list(WINDOWS)}")
    rolling = raw.get("rolling", False)
    if not isinstance(rolling, bool):
        raise BudgetFileError(f"{at('rolling')}: expected true or false, got {rolling!r}")
    tz = raw.get("timezone", "UTC")
    try:
        if not isinstance(tz, str) or not tz:
            raise ZoneInfoNotFoundError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetFileError(f"{at('timezone')}: unknown timezone {tz!r}; expected an IANA name like 'Europe/Berlin'") from None
    enforcement = raw.get("enforcement", "alert")
    if enforcement not in ENFORCEMENTS:
        raise BudgetFileError(f"{at('enforcement')}: unknown enforcement {enforcement!r}; expected one of {list(ENFORCEMENTS)}")
    thresholds_raw = raw.get("thresholds", list(DEFAULT_THRESHOLDS))
    if not isinstance(thresholds_raw, Sequence) or isinstance(thresholds_raw, (str, bytes)):
        raise BudgetFileError(f"{at('thresholds')}: expected a list of shares like [0.5, 0.8, 1.0], got {thresholds_raw!r}")
    thresholds = tuple(sorted(_number(t, at("thresholds"), minimum=0.0, allow_equal=False) for t in thresholds_raw))
    if any(t > 10 for t in thresholds) or len(set(thresholds)) != len(thresholds):
        raise BudgetFileError(f"{at('thresholds')}: expected distinct shares in (0, 10], got {list(thresholds_raw)!r}")
    forecast = raw.get("forecast", True)
    if not isinstance(forecast, bool):
        raise BudgetFileError(f"{at('forecast')}: expected true or false, got {forecast!r}")
    floor = raw.get("floor")
    if floor is not None:
        if enforcement != "pace":
            raise BudgetFileError(f"{at('floor')}: only a 'pace' budget has a floor (this one is {enforcement!r})")
        try:
            QualityTarget.parse(str(floor))
        except ValueError as exc:
            raise BudgetFileError(f"{at('floor')}: {exc}") from None
        floor = str(floor)
    ceiling = raw.get("ceiling_usd")
    if enforcement == "downgrade" and ceiling is None:
        raise BudgetFileError(f"{at('ceiling_usd')}: a 'downgrade' budget needs the expected cost ceiling per call (USD)")
    if ceiling is not None:
        if enforcement != "downgrade":
            raise BudgetFileError(f"{at('ceiling_usd')}: only a 'downgrade' budget has a ceiling (this one is {enforcement!r})")
        ceiling = _number(ceiling, at("ceiling_usd"))
    downgrade_at = _number(raw.get("downgrade_at", 0.8), at("downgrade_at"))
    webhook = raw.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
        raise BudgetFileError(f"{at('webhook')}: expected an http:// or https:// URL, got {webhook!r}")
    return BudgetSpec(
        name=name.strip(), scope=scope, subject=subject, amount_usd=amount, window=window, rolling=rolling,
        timezone=tz, enforcement=enforcement, thresholds=thresholds, forecast=forecast, floor=floor,
        ceiling_usd=ceiling, downgrade_at=downgrade_at, webhook=webhook,
    )


def parse_budgets(data: Any, source: str) -> tuple[BudgetSpec, ...]:
    """Every budget of a parsed budget document (``{"budgets": [...]}``); names and (subject, window)
    pairs must be unique. Raises :class:`BudgetFileError` naming ``source``."""
    if data is None:
        return ()
    if not isinstance(data, Mapping) or set(data) - {"budgets"}:
        raise BudgetFileError(f"{source}: expected a mapping with one key, 'budgets' (a list of budgets)")
    items = data.get("budgets") or []
    if not isinstance(items, list):
        raise BudgetFileError(f"{source}, field 'budgets': expected a list of budgets, got {type(items).__name__}")
    specs = [parse_budget(item, source, i) for i, item in enumerate(items)]
    check_unique(specs, source)
    return tuple(specs)


def check_unique(specs: Sequence[BudgetSpec], source: str) -> None:
    """Raise :class:`BudgetFileError` on a repeated name, or two budgets for one subject and window."""
    names: dict[str, int] = {}
    subjects: dict[tuple[str, str, str, bool], str] = {}
    for i, s in enumerate(specs):
        if s.name in names:
            raise BudgetFileError(
                f"{source}, budget #{i + 1} ({s.name!r}), field 'name': duplicate budget name "
                f"(also budget #{names[s.name] + 1})"
            )
        names[s.name] = i
        k = (s.scope, s.subject, s.window, s.rolling)
        if k in subjects:
            raise BudgetFileError(
                f"{source}, budget #{i + 1} ({s.name!r}), field '{s.scope}': duplicate budget: {subjects[k]!r} is "
                f"already a {'rolling ' if s.rolling else ''}{s.window} budget for {s.scope} {s.subject!r}"
            )
        subjects[k] = s.name


def load_budget_file(path: str | Path) -> tuple[BudgetSpec, ...]:
    """Read and validate a budget YAML file; raises :class:`BudgetFileError` naming the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BudgetFileError(f"{p}: cannot read the budget file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BudgetFileError(f"{p}: not valid YAML ({exc})") from None
    return parse_budgets(data, str(p))
