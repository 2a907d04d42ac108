"""The logged traffic off-policy evaluation learns from: decisions with an outcome and feedback.

Built from :meth:`llmroute.data.decision_log.DecisionLogStore.joined` batches. Each kept decision
gives the context (prompt, constraints, target, task hint), the logged action (``chosen_model``, the
model the service called first), its logged propensity, and the rewards: quality (the latest
feedback) and cost (the outcome's total cost over every cascade attempt). Decisions without outcome
or feedback, with a redacted prompt, or without a cost are counted per reason, never dropped silently.

The logging policy's whole distribution is recovered from the record: the router's own pick is
recomputed from the logged candidates, rule and knob (:func:`llmroute.router.policy.choose`, the
computation the router made), and the exploration set and share from the exploration mode:

* ``uniform`` (records without an ``"exploration"`` entry in their constraints JSON): the set is every
  other eligible model and the share follows from the propensity (the router's pick was served with
  ``1 - share``, an explored model with ``share / k``, ``k`` the other eligible models);
* ``runner_up``: the record logs the mode, top_k, share and the set itself (the router's runner-ups,
  see :mod:`llmroute.serving.exploration`); every model outside the set and the pick has probability 0.

So for any target action we know whether the logging policy could have taken it at all (support).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from llmroute.router import policy

_EPS = 1e-9


@dataclass(frozen=True)
class LoggedTraffic:
    """Columns of the usable logged decisions (all of length ``n``) and the read/skip accounting."""

    decision_ids: tuple[str, ...]
    prompts: tuple[str, ...]
    logged_model: np.ndarray  # object array of model names (the model called first)
    outcome_model: np.ndarray  # the model whose answer was returned (differs after a cascade escalation)
    propensity: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    router_version: np.ndarray
    router_pick: np.ndarray  # the logging router's own (pre-exploration) choice; None when not recoverable
    exploration_share: np.ndarray  # NaN when not recoverable
    exploration_sets: tuple[frozenset[str] | None, ...]  # what an explored draw could serve; None: uniform
    eligible: tuple[frozenset[str], ...]  # models the logged request allowed (empty: unknown)
    constraints: tuple[dict, ...]
    targets: tuple[str | None, ...]
    rules: tuple[str | None, ...]
    knobs: tuple[float | None, ...]
    task_hints: tuple[str | None, ...]
    read: int
    skipped: dict[str, int] = field(default_factory=dict)
    exact_targets: tuple[tuple[float, str] | None, ...] = ()  # (value, kind) where logged (0007 on); else ()

    def __len__(self) -> int:
        return len(self.decision_ids)

    @property
    def explored(self) -> np.ndarray:
        """True where the served model was not the logging router's own pick."""
        return np.array([p is not None and m != p for m, p in zip(self.logged_model, self.router_pick)], dtype=bool)

    def logging_probability(self, actions: np.ndarray) -> np.ndarray:
        """The logging policy's probability of ``actions[i]`` for decision ``i`` (NaN when unknown)."""
        out = np.full(len(self), np.nan)
        for i, a in enumerate(actions):
            pick, share = self.router_pick[i], self.exploration_share[i]
            if pick is None or np.isnan(share):
                if a == self.logged_model[i]:
                    out[i] = self.propensity[i]
                continue
            chosen_from = self.exploration_sets[i]
            others = chosen_from if chosen_from is not None else self.eligible[i] - {pick}
            if a == pick:
                out[i] = 1.0 - share
            elif a in others:
                out[i] = share / len(others)
            else:
                out[i] = 0.0
        return out

    def subset(self, rows: np.ndarray) -> LoggedTraffic:
        rows = np.asarray(rows)

        def t(seq: tuple) -> tuple:
            return tuple(seq[i] for i in rows)

        return LoggedTraffic(
            t(self.decision_ids), t(self.prompts), self.logged_model[rows], self.outcome_model[rows],
            self.propensity[rows], self.quality[rows], self.cost[rows], self.router_version[rows],
            self.router_pick[rows], self.exploration_share[rows], t(self.exploration_sets), t(self.eligible),
            t(self.constraints),
            t(self.targets), t(self.rules), t(self.knobs), t(self.task_hints), self.read, dict(self.skipped),
            t(self.exact_targets) if self.exact_targets else (),
        )

    def report_lines(self) -> list[str]:
        lines = [f"decisions read: {self.read}", f"decisions used: {len(self)}"]
        for reason, k in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            lines.append(f"  skipped {k:>7}  {reason}")
        if len(self):
            lines.append(f"explored (served model was not the router's pick): {int(self.explored.sum())}")
            esc = int((self.outcome_model != self.logged_model).sum())
            if esc:
                lines.append(f"escalated by the cascade (reward is the cascade's final answer): {esc}")
        return lines


def _router_pick(cands: list[dict], rule: str | None, knob: float | None) -> tuple[str | None, frozenset[str]]:
    eligible = frozenset(str(c["model"]) for c in cands if c.get("eligible"))
    if not cands or not policy.is_rule(rule) or knob is None or not eligible:
        return None, eligible
    probs = np.array([[float(c["probability"]) for c in cands]])
    costs = np.array([[float(c["expected_cost_usd"] if c["expected_cost_usd"] is not None else 0.0) for c in cands]])
    mask = np.array([[bool(c.get("eligible")) for c in cands]])
    idx, _ = policy.choose(str(rule), probs, costs, mask, float(knob))
    return (str(cands[int(idx[0])]["model"]) if idx[0] >= 0 else None), eligible


def _exploration(cons: dict, pick: str | None, eligible: frozenset[str]) -> tuple[frozenset[str] | None, float | None]:
    """The exploration set and share a record logs (None, None: uniform, the set is every other eligible model)."""
    logged = cons.get("exploration")
    if not isinstance(logged, dict) or logged.get("mode", "uniform") == "uniform":
        return None, None
    models = frozenset(str(m) for m in logged.get("models") or ())
    share = logged.get("share")
    if logged.get("mode") != "runner_up" or share is None or pick in models or not models <= eligible:
        return frozenset(), float("nan")  # unknown mode or an inconsistent record: the policy is not recoverable
    return models, float(share)


def _share(served: str, pick: str | None, propensity: float, others: frozenset[str]) -> float:
    if pick is None:
        return float("nan")
    k = len(others)
    if served == pick:
        return max(0.0, 1.0 - propensity)
    if k == 0:
        return float("nan")  # an explored model with no other eligible one: the record is inconsistent
    return min(1.0, propensity * k)


def logged_traffic(batches: Iterable[pa.RecordBatch]) -> LoggedTraffic:
    """Collect the usable decisions of ``batches`` (joined log) and count the rest per reason."""
    cols: dict[str, list] = {k: [] for k in (
        "decision_id", "prompt", "chosen_model", "outcome_model", "propensity", "quality", "cost_usd",
        "router_version", "pick", "share", "sets", "eligible", "constraints", "target", "exact_target", "rule", "knob",
        "task_hint")}
    skipped: Counter[str] = Counter()
    read = 0
    for batch in batches:
        for row in batch.to_pylist():
            read += 1
            # the same reasons, in the same order, as benchmark_rows (retraining) counts them
            if row["quality"] is None:
                skipped["no feedback (quality unknown)"] += 1
                continue
            if row["outcome_model"] is None:
                skipped["no outcome (decision only, e.g. /route)"] += 1
                continue
            if row["prompt"] is None:
                skipped["prompt redacted (the target policy cannot route it)"] += 1
                continue
            if row["cost_usd"] is None:
                skipped["no cost in the outcome"] += 1
                continue
            cands = list(row["candidates"] or [])
            pick, eligible = _router_pick(cands, row["rule"], row["knob"])
            served = str(row["chosen_model"])
            p = float(row["propensity"])
            cons = json.loads(row["constraints"]) if row["constraints"] else {}
            chosen_from, share = _exploration(cons, pick, eligible)
            if share is None:
                share = _share(served, pick, p, eligible - {pick} if pick is not None else eligible)
            elif served != pick and served not in (chosen_from or frozenset()):  # a share comes with its set
                share = float("nan")  # served a model outside the logged set: the record is inconsistent
            cols["decision_id"].append(str(row["decision_id"]))
            cols["prompt"].append(str(row["prompt"]))
            cols["chosen_model"].append(served)
            cols["outcome_model"].append(str(row["outcome_model"]))
            cols["propensity"].append(p)
            cols["quality"].append(float(row["quality"]))
            cols["cost_usd"].append(float(row["cost_usd"]))
            cols["router_version"].append(str(row["router_version"]))
            cols["pick"].append(pick)
            cols["share"].append(share)
            cols["sets"].append(chosen_from)
            cols["eligible"].append(eligible)
            cols["constraints"].append(cons)
            cols["target"].append(row["target"])
            value, kind = row.get("target_value"), row.get("target_kind")
            cols["exact_target"].append((float(value), str(kind)) if value is not None and kind is not None else None)
            cols["rule"].append(row["rule"])
            cols["knob"].append(row["knob"])
            cols["task_hint"].append(row["task_hint"])

    def obj(k: str) -> np.ndarray:
        return np.array(cols[k], dtype=object)

    return LoggedTraffic(
        decision_ids=tuple(cols["decision_id"]),
        prompts=tuple(cols["prompt"]),
        logged_model=obj("chosen_model"),
        outcome_model=obj("outcome_model"),
        propensity=np.array(cols["propensity"], dtype=np.float64),
        quality=np.array(cols["quality"], dtype=np.float64),
        cost=np.array(cols["cost_usd"], dtype=np.float64),
        router_version=obj("router_version"),
        router_pick=obj("pick"),
        exploration_share=np.array(cols["share"], dtype=np.float64),
        exploration_sets=tuple(cols["sets"]),
        eligible=tuple(cols["eligible"]),
        constraints=tuple(cols["constraints"]),
        targets=tuple(cols["target"]),
        rules=tuple(cols["rule"]),
        knobs=tuple(cols["knob"]),
        task_hints=tuple(cols["task_hint"]),
        read=read,
        exact_targets=tuple(cols["exact_target"]),
        skipped={k: v for k, v in skipped.items() if v},
    )
