"""Fitting the cascade's operating points out-of-fold on the training logs.

Inputs are all out-of-fold: the router's quality-model probabilities (``QualityModel.oof_probs_``) and
the answer scorer's fold predictions (:meth:`llmroute.training.scorer.ResponseScorer.score_oof`), on the
training prompts whose every model has a known quality, cost and response. Nothing sees a test split.

Router cascade. For every knob of the router's default rule, every escalation order in :data:`JUMPS`,
every scorer weight in :data:`SCORER_WEIGHTS` and every pair of acceptance thresholds (attempt 1, attempt 2) on
:data:`llmroute.router.cascade_search.THRESHOLD_GRID`, the cascade's mean quality and cost on the
training prompts are computed (first model = the router's pick at that knob; chain = the served order;
confidence = the served combination of router probability and scorer probability). The cost-quality
frontier of all those points is kept (at most :data:`MAX_POINTS`, evenly spaced along it).

Fixed chain (FrugalGPT-style baseline): cheapest-first chains of 1 to ``max_attempts`` models drawn
from the models on the single-model cost-quality frontier of the training logs; confidence = the scorer
probability alone; per-attempt thresholds on the same grid; frontier as above.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from llmroute.router import policy
from llmroute.router.cascade_policy import CascadeRule, OperatingPoint, OperatingPoints, pareto_frontier, thin
from llmroute.router.cascade_search import THRESHOLD_GRID, chain_for, sweep_thresholds
from llmroute.router.decision import Candidate
from llmroute.router.embedder import EmbeddingCache
from llmroute.training.scorer import ResponseScorer

SCORER_WEIGHTS = (1.0, 2.0, 4.0, 8.0)
JUMPS = (None, 1, 2)  # CascadeRule.jump_after values searched (None: the climbing order throughout)
MAX_POINTS = 120
MAX_CHAIN_MODELS = 5


SCORE_BATCH = 50_000  # cells scored at once: bounds the feature matrices of one batch


class ChainScores:
    """Out-of-fold scorer probabilities of (prompt row, model, earlier models) cells, scored in batches
    of at most :data:`SCORE_BATCH` cells."""

    def __init__(self, scorer: ResponseScorer, prompts: Sequence[str], responses: np.ndarray,
                 models: Sequence[str], cache: EmbeddingCache | None) -> None:
        self.scorer, self.prompts, self.responses, self.cache = scorer, prompts, responses, cache
        self.col = {m: j for j, m in enumerate(models)}
        self.values: dict[tuple[int, str, tuple[str, ...]], float] = {}

    def need(self, cells: set[tuple[int, str, tuple[str, ...]]]) -> None:
        todo = [c for c in cells if c not in self.values]
        for start in range(0, len(todo), SCORE_BATCH):
            batch = todo[start : start + SCORE_BATCH]
            p = self.scorer.score_oof(
                [self.prompts[i] for i, _, _ in batch],
                [str(self.responses[i, self.col[m]]) for i, m, _ in batch],
                [m for _, m, _ in batch],
                [tuple((e, str(self.responses[i, self.col[e]])) for e in prev) for i, _, prev in batch],
                self.cache,
            )
            self.values.update(zip(batch, p.tolist()))


def _arrays(
    chains: Sequence[tuple[str, ...]], col: dict[str, int], quality: np.ndarray, cost: np.ndarray, S: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(chains)
    q, c, valid = np.zeros((n, S)), np.zeros((n, S)), np.zeros((n, S), dtype=bool)
    for i, ch in enumerate(chains):
        for s, m in enumerate(ch):
            q[i, s], c[i, s], valid[i, s] = quality[i, col[m]], cost[i, col[m]], True
    return q, c, valid


class ChainTable:
    """The router cascade's chains of one escalation order, as arrays: row ``lookup[i, j]`` holds the
    chain of prompt ``i`` when the router's pick is model ``j`` (model indices, -1 past its end) and
    the out-of-fold scorer probability of each of its attempts. Built once per (prompt, distinct first
    pick), so every knob's chains are gathered by indexing instead of a Python loop over prompts."""

    def __init__(self, n: int, m: int, steps: int) -> None:
        self.lookup = np.full((n, m), -1, dtype=np.int64)
        self.chains: list[tuple[int, tuple[str, ...]]] = []  # (prompt row, chain) per table row
        self.steps = steps

    def add(self, i: int, first: int, chain: tuple[str, ...]) -> None:
        self.lookup[i, first] = len(self.chains)
        self.chains.append((i, chain))

    def cells(self) -> set[tuple[int, str, tuple[str, ...]]]:
        return {(i, m, ch[:s]) for i, ch in self.chains for s, m in enumerate(ch)}

    def arrays(self, col: dict[str, int], scores: ChainScores) -> None:
        """Fill :attr:`models` and :attr:`scores` once every cell is scored."""
        R = len(self.chains)
        self.models = np.full((R, self.steps), -1, dtype=np.int64)
        self.scores = np.zeros((R, self.steps))
        for r, (i, ch) in enumerate(self.chains):
            for s, m in enumerate(ch[: self.steps]):
                self.models[r, s] = col[m]
                self.scores[r, s] = scores.values[(i, m, ch[:s])]

    def gather(self, firsts: np.ndarray, probs: np.ndarray, quality: np.ndarray, cost: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(quality, cost, valid, router probability, scorer probability), each (n, steps), of every
        prompt's chain when its first model is ``firsts[i]`` (0 where the chain has no such attempt)."""
        rows = np.arange(len(firsts))
        r = self.lookup[rows, firsts]
        cm = self.models[r]
        valid = cm >= 0
        at = (rows[:, None], np.where(valid, cm, 0))
        return (np.where(valid, quality[at], 0.0), np.where(valid, cost[at], 0.0), valid,
                np.where(valid, probs[at], 0.0), np.where(valid, self.scores[r], 0.0))


def fit_operating_points(
    models: Sequence[str],
    prompts: Sequence[str],
    responses: np.ndarray | None,
    probs: np.ndarray,
    expected_cost: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    scorer: ResponseScorer,
    rule: str,
    threshold: float,
    max_attempts: int = 3,
    cache: EmbeddingCache | None = None,
    scores: ChainScores | None = None,
) -> OperatingPoints:
    """The router cascade's and the fixed-chain baseline's validation frontiers (see module docstring).
    Inputs are (n, m) over complete training prompts; ``probs`` must be out-of-fold. ``scores``: where
    the answers are scored (default: ``responses`` in this process; on Dask, on the workers that hold
    them, with ``responses`` None).

    Cost: linear in the prompts (one chain walk per prompt, distinct first pick and escalation order;
    each (knob, order, weight) block of threshold pairs from histograms, see
    :func:`~llmroute.router.cascade_search.sweep_thresholds`), plus the search's fixed number of points."""
    t0 = time.perf_counter()
    n, m = quality.shape
    col = {m: j for j, m in enumerate(models)}
    if scores is None:
        if responses is None:
            raise ValueError("fit_operating_points needs the responses or the scores")
        scores = ChainScores(scorer, prompts, responses, models, cache)
    success_q = quality  # delivered quality is the logged quality, as in the evaluation
    grid = policy.knob_grid(rule)
    firsts = np.stack(
        [policy.choose(rule, probs, expected_cost, np.ones_like(probs, dtype=bool), float(k))[0] for k in grid], axis=1
    )
    rules = {jump: CascadeRule(thresholds=(1.0,), max_attempts=max_attempts, jump_after=jump) for jump in JUMPS}
    tables = {jump: ChainTable(n, m, max_attempts) for jump in JUMPS}
    for i in range(n):
        cands = {mod: Candidate(mod, float(probs[i, j]), float(expected_cost[i, j]), True, None) for mod, j in col.items()}
        for j in sorted({int(f) for f in firsts[i]}):
            for jump in JUMPS:
                tables[jump].add(i, j, chain_for(rules[jump], cands, models[j]))
    scores.need(set().union(*(t.cells() for t in tables.values())))
    for t in tables.values():
        t.arrays(col, scores)
    print(f"cascade fit: {sum(len(t.chains) for t in tables.values())} router chains on {n} prompts, "
          f"{len(scores.values)} answers scored out-of-fold ({time.perf_counter() - t0:.1f} s)", flush=True)

    T = len(THRESHOLD_GRID)
    blocks: list[tuple[float, float, int | None]] = []  # (knob, weight, jump_after) of each T x T block of points
    qs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    for (k, knob), jump in itertools.product(enumerate(grid), JUMPS):
        q, c, valid, p_router, p_scorer = tables[jump].gather(firsts[:, k], probs, success_q, cost)
        for w in SCORER_WEIGHTS:
            conf = (p_router + w * p_scorer) / (1.0 + w)
            Q, C = sweep_thresholds(conf[:, :3], q[:, :3], c[:, :3], valid[:, :3])
            qs.append(Q.ravel())
            cs.append(C.ravel())
            blocks.append((float(knob), w, jump))
    Qa, Ca = np.concatenate(qs), np.concatenate(cs)
    front = thin(pareto_frontier(Ca, Qa), MAX_POINTS)
    cascade = tuple(
        OperatingPoint(rule, knob, w, 1.0, (float(THRESHOLD_GRID[(i % (T * T)) // T]), float(THRESHOLD_GRID[i % T])),
                       max_attempts, float(Qa[i]), float(Ca[i]), jump_after=jump)
        for i in front
        for knob, w, jump in [blocks[i // (T * T)]]
    )
    print(f"cascade fit: {len(Qa)} router-cascade points, {len(cascade)} kept on the frontier "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    # ---- fixed chains (FrugalGPT-style) --------------------------------------------------------------
    single_q, single_c = quality.mean(axis=0), cost.mean(axis=0)
    eff = pareto_frontier(single_c, single_q)[:MAX_CHAIN_MODELS] if max_attempts > 0 else []
    eff_models = [models[j] for j in eff]  # cheapest first
    fixed = [ch for r in range(1, max_attempts + 1) for ch in itertools.combinations(eff_models, r)]
    fparams: list[tuple[tuple[str, ...], float, float]] = []
    ta, tb = np.meshgrid(THRESHOLD_GRID, THRESHOLD_GRID, indexing="ij")
    fq: list[np.ndarray] = []
    fc: list[np.ndarray] = []
    for ch in fixed:
        scores.need({(i, m, ch[:s]) for i in range(n) for s, m in enumerate(ch)})
        chains = [ch] * n
        q, c, valid = _arrays(chains, col, success_q, cost, len(ch))
        conf = np.array([[scores.values[(i, m, ch[:s])] for s, m in enumerate(ch)] for i in range(n)])
        Q, C = sweep_thresholds(conf, q, c, valid)
        if len(ch) == 1:  # thresholds do not matter for a single model
            Q, C = Q[:1, :1], C[:1, :1]
            fparams.append((ch, 0.0, 0.0))
        elif len(ch) == 2:  # only the first threshold matters
            Q, C = Q[:, :1], C[:, :1]
            fparams.extend((ch, float(a), 0.0) for a in THRESHOLD_GRID)
        else:
            fparams.extend(zip(itertools.repeat(ch), ta.ravel().tolist(), tb.ravel().tolist()))
        fq.append(Q.ravel())
        fc.append(C.ravel())
    FQ, FC = (np.concatenate(fq), np.concatenate(fc)) if fq else (np.zeros(0), np.zeros(0))
    ffront = thin(pareto_frontier(FC, FQ), MAX_POINTS) if len(FQ) else []
    fixed_points = tuple(
        OperatingPoint("", 0.0, 1.0, 0.0, (fparams[i][1], fparams[i][2]), len(fparams[i][0]),
                       float(FQ[i]), float(FC[i]), chain=fparams[i][0])
        for i in ffront
    )
    best = int(np.argmax(single_q))
    print(f"cascade fit: {len(fixed)} fixed chains over {eff_models}, {len(fixed_points)} frontier points; "
          f"done in {time.perf_counter() - t0:.1f} s", flush=True)
    return OperatingPoints(
        cascade=cascade,
        fixed_chain=fixed_points,
        best_single_model=models[best],
        best_single_quality=float(single_q[best]),
        info={
            "validation_prompts": int(n),
            "success_threshold": threshold,
            "scorer_weights": list(SCORER_WEIGHTS),
            "jump_after": list(JUMPS),
            "threshold_grid": [float(x) for x in THRESHOLD_GRID],
            "fixed_chain_models": eff_models,
            "points_searched": {"cascade": int(len(Qa)), "fixed_chain": int(len(FQ))},
            "out_of_fold": "router OOF probabilities and scorer fold predictions on the training logs",
        },
    )
