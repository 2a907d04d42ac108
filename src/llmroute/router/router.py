"""The learned router: embed the prompt, predict every model's chance of meeting the target, pick.

``Router.route(prompt, constraints) -> Decision`` is the whole public surface used by the service; the
evaluation uses :meth:`Router.predict` on batches and sweeps the rule's knob itself. A decision
carries the embedding row it was predicted from (``Decision.embedding``), which is how the decision
log gets it.

A router is immutable (a frozen dataclass whose mappings are read-only views): what changes it
returns a new router (:meth:`Router.with_version`, :meth:`Router.with_info`,
:meth:`Router.with_catalog`), so a router being served never changes under a request.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from llmroute.data.catalog import Catalog, ModelSpec, merge_catalog
from llmroute.data.tokens import count_tokens_batch
from llmroute.router import data_policy, policy
from llmroute.router.cost import LinearCostModel
from llmroute.router.decision import (
    Candidate,
    Constraints,
    Decision,
    NoEligibleModelError,
    QualityTarget,
    RouteQuery,
)
from llmroute.router.decision_rules import CONFIDENCE_RULE, get_rule
from llmroute.router.eligibility import Figures, assumed_figures, exclusion_reasons, resolve_figures
from llmroute.router.embedder import Embedder, EmbedderMismatchError
from llmroute.router.features import text_features
from llmroute.router.knobs import KnobTable
from llmroute.router.quality_model import QualityModel
from llmroute.router.router_info import RouterInfo
from llmroute.router.text import focus_text
from llmroute.router.threads import SMALL_BATCH, one_thread

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Prepared:
    """What the router derives from prompt texts before predicting."""

    prompts: tuple[str, ...]
    embeddings: np.ndarray
    features: np.ndarray
    input_tokens: np.ndarray


@dataclass(frozen=True, eq=False, kw_only=True)
class Router:
    """A trained router (see module docstring). Build it with ``training.train`` or :meth:`load`.

    Immutable: fields cannot be assigned, ``specs`` and ``knob_tables`` are read-only mappings (copied
    from what the constructor is given), and the ``with_...`` methods return a new router sharing the
    unchanged parts (the fitted models are never copied). Equality and hashing are by identity, so a
    router can key per-router state (the service's micro-batchers)."""

    models: tuple[str, ...]
    specs: Mapping[str, ModelSpec | None]
    embedder: Embedder
    quality: QualityModel
    cost_model: LinearCostModel
    knob_tables: Mapping[str, KnobTable]
    default_rule: str
    default_target: QualityTarget
    version: str = "unversioned"
    info: RouterInfo = field(default_factory=RouterInfo)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "specs", MappingProxyType(dict(self.specs)))
        object.__setattr__(self, "knob_tables", MappingProxyType(dict(self.knob_tables)))
        if not isinstance(self.info, RouterInfo):
            raise TypeError(f"Router info must be a RouterInfo, got {type(self.info).__name__}")

    def with_version(self, version: str) -> Router:
        """This router under another version name (a registry version, ``name/N``); nothing else differs."""
        return dataclasses.replace(self, version=version)

    def with_info(self, **changes: Any) -> Router:
        """This router with the given :class:`~llmroute.router.router_info.RouterInfo` fields replaced
        (e.g. ``lineage=...``); routes exactly like this router."""
        return dataclasses.replace(self, info=dataclasses.replace(self.info, **changes))

    # ---- batch prediction -----------------------------------------------------------------------
    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, d) embeddings of the prompts' focus texts, each row exactly as the prompt alone gets it
        (see :meth:`_encode`)."""
        return self._encode([focus_text(p) for p in prompts], independent_rows=True)

    def _encode(self, focus: list[str], independent_rows: bool) -> np.ndarray:
        """Embeddings of focus texts. With ``independent_rows`` each row is exactly what the text alone
        gets: one ``encode`` call when the embedder's rows do not depend on the batch (its
        ``independent_rows`` attribute, true for a static model), else one call per text (a
        transformer pads a batch to its longest text, which moves the last bits of the other rows)."""
        if independent_rows and len(focus) > 1 and not getattr(self.embedder, "independent_rows", False):
            return np.vstack([self.embedder.encode([f]) for f in focus])
        return self.embedder.encode(focus)

    def prepare(
        self, prompts: Sequence[str], embeddings: np.ndarray | None = None, *, independent_rows: bool = False
    ) -> Prepared:
        """Embeddings (unless given), text features and token counts of the prompts; ``independent_rows``:
        see :meth:`_encode`. Up to :data:`~llmroute.router.threads.SMALL_BATCH` prompts run on one
        thread (:func:`~llmroute.router.threads.one_thread`)."""
        with _threads_for(len(prompts)):
            focus = [focus_text(p) for p in prompts]
            tokens = np.asarray(count_tokens_batch(prompts), dtype=np.float64)
            emb = self._encode(focus, independent_rows) if embeddings is None else embeddings
            return Prepared(tuple(prompts), emb, text_features(prompts, focus, tokens), tokens)

    def predict(
        self, prepared: Prepared, tasks: Sequence[str | None] | None = None, *, independent_rows: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, expected costs), both (n, m). ``tasks`` are optional hints (None entries
        allowed) that replace the task the model infers from the prompt. ``independent_rows``: see
        :meth:`QualityModel.predict`."""
        with _threads_for(len(prepared.prompts)):
            probs = self.quality.predict(prepared.embeddings, prepared.features, tasks, independent_rows=independent_rows)
            return probs, self.cost_model.predict(prepared.input_tokens)

    # ---- single decisions -------------------------------------------------------------------------
    def route(
        self,
        prompt: str,
        constraints: Constraints | None = None,
        target: QualityTarget | None = None,
        confidence: float | None = None,
        task: str | None = None,
        rule: str | None = None,
    ) -> Decision:
        """Choose a model for one prompt.

        ``confidence`` asks for the threshold rule with that probability bar; otherwise ``target``
        (default: the router's default target) is mapped to the knob of ``rule`` (default: the rule
        the evaluation chose) using validation data. Raises :class:`NoEligibleModelError` when the
        constraints exclude every model.
        """
        return self.route_query(RouteQuery(prompt, constraints or Constraints(), target, confidence, task, rule))

    def route_query(self, query: RouteQuery) -> Decision:
        """:meth:`route` for a :class:`RouteQuery`."""
        outcome = self.route_many([query])[0]
        if isinstance(outcome, ValueError):
            raise outcome
        return outcome

    def route_many(self, queries: Sequence[RouteQuery], prepared: Prepared | None = None) -> list[Decision | ValueError]:
        """Route several prompts with one quality-model prediction (and one embedding call when the
        embedder allows it, see :meth:`_encode`; or with ``prepared``, from
        ``prepare(prompts, independent_rows=True)``).

        Each query gets exactly the decision :meth:`route` gives it alone (a row's numbers never depend
        on the other rows). A query that :meth:`route` would refuse with a ``ValueError`` (no eligible
        model, unknown rule, confidence out of range) gets that error in its place; the others are
        still routed.

        Up to :data:`~llmroute.router.threads.SMALL_BATCH` queries run on one thread
        (:func:`~llmroute.router.threads.one_thread`): multi-threaded BLAS and OpenMP cost several
        times more CPU than they save on a few rows.
        """
        if not queries:
            return []
        with _threads_for(len(queries)):
            if prepared is None:
                prepared = self.prepare([q.prompt for q in queries], independent_rows=True)
            tasks = [q.task or None for q in queries]
            probs, costs = self.predict(prepared, tasks if any(tasks) else None, independent_rows=True)
            rows = prepared.embeddings.view()  # decisions get read-only views of their rows, no copies
            rows.flags.writeable = False
            return self.decide_all(queries, probs, costs, prepared.input_tokens, rows)

    def decide_all(
        self, queries: Sequence[RouteQuery], probs: np.ndarray, costs: np.ndarray, input_tokens: np.ndarray,
        embeddings: np.ndarray | None = None,
    ) -> list[Decision | ValueError]:
        """The decisions for ``queries`` from predictions already made (row i of ``probs``, ``costs``
        and ``input_tokens`` is query i): eligibility under each query's constraints, its rule and
        knob, the choice. A query refused with a ``ValueError`` gets that error in its place.
        ``embeddings`` (row i: query i's) become the decisions' ``embedding`` (None without them)."""
        specs, figures, notes = self._model_facts
        out: list[Decision | ValueError] = []
        for i, q in enumerate(queries):
            try:
                emb = embeddings[i] if embeddings is not None else None
                out.append(self._decide(q, probs[i], costs[i], int(input_tokens[i]), specs, figures, notes, emb))
            except ValueError as exc:
                out.append(exc)
        return out

    @cached_property
    def _model_facts(self) -> tuple[list[ModelSpec | None], list[Figures], list[tuple[str, ...]]]:
        """Per model: its spec, the figures the eligibility checks use (:func:`resolve_figures`) and the notes a
        decision carries about assumed figures and an unknown price. Fixed for a router (its specs and cost
        model do not change), so worked out at its first decision, not at every one (~0.09 ms a call)."""
        specs = [self.specs.get(m) for m in self.models]
        figures = resolve_figures(specs)
        notes = [
            assumed_figures(f) + ((price,) if (price := self.cost_model.unknown_price(m)) else ())
            for m, f in zip(self.models, figures)
        ]
        return specs, figures, notes

    def _decide(
        self,
        q: RouteQuery,
        p: np.ndarray,
        c: np.ndarray,
        input_tokens: int,
        specs: list[ModelSpec | None],
        figures: list[Figures],
        notes: list[tuple[str, ...]],
        embedding: np.ndarray | None = None,
    ) -> Decision:
        self._check_names(q)
        cap = np.maximum(
            self.cost_model.predict_cap(np.array([input_tokens]), q.constraints.max_output_tokens)[0], c
        )
        reasons = exclusion_reasons(q.constraints, self.models, specs, input_tokens, c, cap, figures)
        mask = np.array([r is None for r in reasons])
        if not mask.any():
            raise NoEligibleModelError({m: r or "" for m, r in zip(self.models, reasons)})
        target_used: QualityTarget | None = None
        reachable = True
        if q.confidence is not None:
            if not 0.0 <= q.confidence <= 1.0:
                raise ValueError(f"confidence must be within [0, 1], got {q.confidence}")
            rule_used, knob = CONFIDENCE_RULE, float(q.confidence)
        else:
            rule_used = q.rule or self.default_rule
            if rule_used not in self.knob_tables:
                raise ValueError(f"unknown rule {rule_used!r}; this router has {sorted(self.knob_tables)}")
            target_used = q.target or self.default_target
            if q.knob is not None:
                knob = float(q.knob)
            else:
                knob, reachable = self.knob_tables[rule_used].knob_for(target_used)
        idx, cleared = policy.choose(rule_used, p[None, :], c[None, :], mask[None, :], knob)
        j = int(idx[0])
        chosen = self.models[j]
        reason = self._reason(rule_used, knob, bool(cleared[0]), reasons, chosen, p, c, mask)
        if target_used is not None and not reachable:
            reason += f"; target {target_used} was not reached on validation data, so the best knob is used"
        is_cleared = bool(cleared[0]) and (target_used is None or reachable)  # no knob reached it: not cleared
        if q.constraints.data_policy == "prefer_local":
            bar = self._probability_bar(q, rule_used, knob)
            j, why = data_policy.prefer_local(self.models, specs, list(p), list(c), list(mask), j, bar)
            if self.models[j] != chosen:
                chosen, is_cleared, reason = self.models[j], True, f"{why} ({reason})"
            else:
                reason += f"; {why}"
        return Decision(
            model=chosen,
            candidates=tuple(
                Candidate(m, float(p[i]), float(c[i]), reasons[i] is None, reasons[i], float(cap[i]), notes[i])
                for i, m in enumerate(self.models)
            ),
            reason=reason,
            cleared=is_cleared,
            rule=rule_used,
            knob=knob,
            router_version=self.version,
            target=target_used,
            task_hint=q.task,
            embedding=embedding,
        )

    def _probability_bar(self, q: RouteQuery, rule_used: str, knob: float) -> float:
        """The P(meets target) a model must reach to "clear the target" of ``q``: the request's
        ``confidence``, else the knob of the rule used when that knob is a probability bar (the threshold
        rule), else the :data:`~llmroute.router.decision_rules.CONFIDENCE_RULE`'s knob for the request's
        target (1.0, nothing clears, when the router has no table for it)."""
        if q.confidence is not None:
            return float(q.confidence)
        if get_rule(rule_used).knob_is_probability_bar:
            return knob
        table = self.knob_tables.get(CONFIDENCE_RULE)
        if table is None:
            return 1.0
        return float(table.knob_for(q.target or self.default_target)[0])

    def with_catalog(self, catalog: Mapping[str, ModelSpec | None]) -> Router:
        """A new router whose catalog data of each model is replaced by ``catalog``'s entry for it
        (looked up by name, so aliases work when ``catalog`` is a :class:`~llmroute.data.catalog.Catalog`;
        models ``catalog`` lacks keep theirs). Routes like this router except where the new entries
        differ (local, context window, latency, capabilities, rate limits); learned costs are unchanged."""
        return dataclasses.replace(self, specs={m: catalog.get(m, s) for m, s in self.specs.items()})

    def _check_names(self, q: RouteQuery) -> None:
        """Unknown model names in allow/deny lists and unknown task hints are errors, not silent no-ops."""
        known = set(self.models) | {a for s in self.specs.values() if s is not None for a in s.aliases}
        c = q.constraints
        for field_name, names in (("allowed_models", c.allowed_models or ()), ("excluded_models", c.excluded_models)):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(
                    f"unknown model {', '.join(map(repr, unknown))} in {field_name}; this router's models are "
                    + ", ".join(self.models)
                )
        tasks = list(getattr(self.quality, "tasks_", []))
        if q.task and q.task not in tasks:
            raise ValueError(
                f"unknown task hint {q.task!r}; this router was trained on the tasks "
                + (", ".join(tasks) if tasks else "(none: its logs had no task labels)")
            )

    def _reason(
        self,
        rule: str,
        knob: float,
        cleared: bool,
        reasons: list[str | None],
        chosen: str,
        p: np.ndarray,
        c: np.ndarray,
        mask: np.ndarray,
    ) -> str:
        excluded = [f"{m} ({r})" for m, r in zip(self.models, reasons) if r is not None]
        binding = f"; excluded by constraints: {', '.join(excluded)}" if excluded else ""
        head = get_rule(rule).explain(knob, cleared)
        chosen_cost = c[self.models.index(chosen)]
        if any(not mask[i] and c[i] < chosen_cost for i in range(len(self.models))):
            head += " (a cheaper model was excluded by the constraints)"
        return head + binding

    def with_catalog_file(self, path: str | Path) -> Router:
        """:meth:`with_catalog` for a user catalog file merged over this router's own catalog data (rule:
        :func:`llmroute.data.catalog.merge_catalog`: an entry naming a model overrides only the fields it
        gives). Raises :class:`llmroute.data.catalog.CatalogError` for a bad file."""
        base = Catalog([s for s in self.specs.values() if s is not None], source="router catalog snapshot")
        return self.with_catalog(merge_catalog(base, path))

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the router as plain files: JSON, YAML, LightGBM text models and NumPy arrays."""
        folder.mkdir(parents=True, exist_ok=True)
        self.quality.save(folder, "quality")
        specs = {m: (s.__dict__ if s else None) for m, s in self.specs.items()}
        (folder / "catalog_snapshot.yaml").write_text(yaml.safe_dump(_plain(specs), sort_keys=False))
        meta = {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "models": list(self.models),
            "embedder": {"spec": self.embedder.spec, "fingerprint": self.embedder.fingerprint},
            "cost_model": self.cost_model.to_dict(),
            "knob_tables": {r: t.to_dict() for r, t in self.knob_tables.items()},
            "default_rule": self.default_rule,
            "default_target": {"value": self.default_target.value, "kind": self.default_target.kind},
            "tasks": list(self.quality.tasks_),
            "info": self.info.to_dict(),
        }
        (folder / "router.json").write_text(json.dumps(meta, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> Router:
        """Load a saved router; ``embedder`` must be the one it was trained with (checked by content hash)."""
        meta = json.loads((folder / "router.json").read_text())
        want = meta["embedder"]
        if embedder.fingerprint != want["fingerprint"]:
            raise EmbedderMismatchError(
                f"router in {folder} was trained with embedder '{want['spec']}' (fingerprint "
                f"{want['fingerprint']}), but the embedder at hand is '{embedder.spec}' (fingerprint "
                f"{embedder.fingerprint})"
            )
        raw_specs = yaml.safe_load((folder / "catalog_snapshot.yaml").read_text()) or {}
        specs: dict[str, ModelSpec | None] = {}
        for m, s in raw_specs.items():
            fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (s or {}).items()}
            specs[m] = ModelSpec(**fields) if s else None
        return cls(
            models=tuple(meta["models"]),
            specs=specs,
            embedder=embedder,
            quality=QualityModel.load(folder, "quality"),
            cost_model=LinearCostModel.from_dict(meta["cost_model"]),
            knob_tables={r: KnobTable.from_dict(t) for r, t in meta["knob_tables"].items()},
            default_rule=meta["default_rule"],
            default_target=QualityTarget(**meta["default_target"]),
            version=meta["version"],
            info=_info(meta.get("info"), folder),
        )


def _threads_for(n: int) -> Any:
    """One thread for a small routing call, every thread for a big batch (see :mod:`llmroute.router.threads`)."""
    return one_thread() if n <= SMALL_BATCH else nullcontext()


def _info(raw: Any, folder: Path) -> RouterInfo:
    """The typed info of a router.json's ``info`` object; a ValueError names the file."""
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{folder / 'router.json'}: 'info' must be an object, got {type(raw).__name__}")
    try:
        return RouterInfo.from_dict(raw)
    except ValueError as exc:
        raise ValueError(f"{folder / 'router.json'}: {exc}") from exc


def read_router_meta(folder: Path) -> dict[str, Any]:
    """The router.json of a saved router (embedder spec, version, ...), without loading models."""
    return json.loads((folder / "router.json").read_text())


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
