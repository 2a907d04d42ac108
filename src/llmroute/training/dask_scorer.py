"""The answer scorer's training on a Dask cluster (``llmroute train --dask``): the answers never leave
the workers.

What runs where (the same steps as :meth:`llmroute.training.scorer.ResponseScorer.fit`):

- each **worker** keeps its partitions' scorer rows (:class:`AnswerPart`: codes into the partition's
  distinct prompts, answers and models) and sends a :class:`PartSummary`: per row only numbers (the
  prompt text's 64-bit key, the model, the label), per model the cost and label sums, the distinct
  prompt focus texts' embeddings and the distinct answers' keys;
- the **client** fits the prompt PCA on the distinct focus embeddings and the answer PCA on at most
  :data:`~llmroute.training.scorer_rows.PCA_SAMPLE` distinct answers' embeddings (fetched by key),
  draws the "earlier answers" rows for every row from those numbers
  (:func:`~llmroute.training.scorer_rows.draw_earlier`, the same draws as in one process) and assigns
  the cross-validation folds (GroupKFold over the prompt keys);
- each **worker** builds its partitions' design matrix (:class:`DesignPart`, kept on the worker); a
  fold task concatenates the parts (worker to worker, in the single-process row order), fits the
  early-stopped fold booster and returns it with its out-of-fold predictions; the final booster is fitted
  data-parallel with :mod:`lightgbm.dask` on the parts where they lie;
- the cascade's out-of-fold answer scores are computed on the workers too (:class:`DaskChainScores`).

What the client holds per row: a few numbers (key, model, label, fold, out-of-fold prediction: about
40 bytes per row and augmented row), never a text.
"""

from __future__ import annotations

import operator
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from llmroute.progress import Report, no_report
from llmroute.router.answer_scorer import ScorerParams, answer_text
from llmroute.router.quality_model import FoldFit, fit_split
from llmroute.router.text import focus_text
from llmroute.training.cascade_fit import ChainScores
from llmroute.training.dask_params import sklearn_params
from llmroute.training.dask_scatter import broadcast
from llmroute.training.scorer import ResponseScorer, _pca
from llmroute.training.scorer_rows import MAX_EARLIER, PCA_SAMPLE, ScorerRows, draw_earlier, pca_sample, text_keys
from llmroute.training.worker_embedder import worker_embedder

# ---- on the workers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerPart:
    """One partition's scorer rows (kept on its worker) and each row's prompt id (a code into
    ``prompt_ids``), by which the cascade's cells find their answers."""

    rows: ScorerRows
    prompt_id: np.ndarray  # (n,) int32
    prompt_ids: list[str]


def answer_part(df: pd.DataFrame, threshold: float) -> AnswerPart:
    """The scorer rows of a validated partition (the rows :meth:`ScorerRows.from_frame` keeps)."""
    rows = ScorerRows.from_frame(df, threshold)
    keep = (df["prompt"].notna() & df["response"].notna() & df["quality"].notna() & df["model"].notna()).to_numpy()
    codes, ids = pd.factorize(df["prompt_id"].astype(str)[keep])
    return AnswerPart(rows, codes.astype(np.int32), [str(i) for i in ids])


@dataclass(frozen=True)
class PartSummary:
    """What the client learns of a partition's scorer rows: numbers, no texts."""

    n_skipped: int
    models: list[str]
    model: np.ndarray  # (n,) int32 code into models
    group: np.ndarray  # (n,) uint64 key of the row's prompt text
    y: np.ndarray  # (n,) float32
    prompt_ids: list[str]  # distinct prompt ids of the rows
    prompt_id: np.ndarray  # (n,) int32 code into prompt_ids
    cost_sum: np.ndarray  # per model: sum of the known costs
    cost_n: np.ndarray  # per model: how many are known
    focus_keys: np.ndarray  # (u,) uint64 keys of the distinct prompt focus texts
    focus_vecs: np.ndarray  # (u, d) float32 their embeddings
    answer_keys: np.ndarray  # (a,) uint64 keys of the distinct embedded answer texts


def _cache(cache_path: str) -> Any:
    from llmroute.router.embedder import EmbeddingCache

    return EmbeddingCache(Path(cache_path))


def summarize(part: AnswerPart, embedder_spec: str, embedders_dir: str, cache_path: str) -> PartSummary:
    """A partition's :class:`PartSummary` (on its worker; the focus texts embedded through the cache)."""
    r = part.rows
    focus = list(dict.fromkeys(focus_text(p) for p in r.prompts))
    vecs = _cache(cache_path).encode(worker_embedder(embedder_spec, embedders_dir), focus, progress=False)
    answers = list(dict.fromkeys(answer_text(a) for a in r.responses))
    known = np.isfinite(r.cost)
    m = len(r.models)
    return PartSummary(
        r.n_skipped, list(r.models), r.model, text_keys(r.prompts)[r.prompt], r.y, part.prompt_ids, part.prompt_id,
        np.bincount(r.model[known], weights=r.cost[known], minlength=m), np.bincount(r.model[known], minlength=m),
        text_keys(focus), np.asarray(vecs, dtype=np.float32), text_keys(answers),
    )


def answer_vectors(part: AnswerPart, keys: np.ndarray, embedder_spec: str, embedders_dir: str, cache_path: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(keys, embeddings) of the partition's distinct answer texts whose key is in ``keys``."""
    answers = list(dict.fromkeys(answer_text(a) for a in part.rows.responses))
    k = text_keys(answers)
    take = np.nonzero(np.isin(k, keys))[0]
    vecs = _cache(cache_path).encode(worker_embedder(embedder_spec, embedders_dir), [answers[i] for i in take], progress=False)
    return k[take], np.asarray(vecs, dtype=np.float32).reshape(len(take), -1)


@dataclass(frozen=True)
class ScorerState:
    """The fitted feature state a worker builds a scorer's features with (no embedder, no booster)."""

    params: ScorerParams
    models: list[str]
    model_prior: dict[str, float]
    p_mean: np.ndarray
    p_components: np.ndarray
    r_mean: np.ndarray
    r_components: np.ndarray

    def scorer(self, embedder: Any) -> ResponseScorer:
        s = ResponseScorer(embedder, self.params)
        s.models_, s.model_prior_ = list(self.models), dict(self.model_prior)
        s.p_mean_, s.p_components_, s.r_mean_, s.r_components_ = self.p_mean, self.p_components, self.r_mean, self.r_components
        return s


@dataclass(frozen=True)
class DesignPart:
    """One partition's design rows: its rows alone, then its augmented rows (kept on its worker)."""

    X_alone: np.ndarray
    X_aug: np.ndarray


def _with_rows(own: ScorerRows, other: ScorerRows, rows: np.ndarray) -> ScorerRows:
    """``own`` with the rows ``rows`` of ``other`` appended (recoded): earlier answers from another
    partition, when a prompt's rows span partitions."""
    P, R, M = list(own.prompts), list(own.responses), list(own.models)
    pi, ri, mi = ({t: i for i, t in enumerate(v)} for v in (P, R, M))

    def code(values: list[str], index: dict[str, int], new: list[str]) -> np.ndarray:
        out = []
        for t in new:
            if t not in index:
                index[t] = len(values)
                values.append(t)
            out.append(index[t])
        return np.asarray(out, dtype=np.int32)

    op, orr, om, _ = other.texts(rows)
    return ScorerRows(
        P, R, M,
        np.concatenate([own.prompt, code(P, pi, op)]), np.concatenate([own.response, code(R, ri, orr)]),
        np.concatenate([own.model, code(M, mi, om)]), np.concatenate([own.y, other.y[rows]]),
        np.concatenate([own.cost, other.cost[rows]]), own.n_skipped,
    )


def design_part(k: int, parts: list[AnswerPart], offsets: np.ndarray, at: np.ndarray, prev: np.ndarray,
                state: ScorerState, embedder_spec: str, embedders_dir: str, cache_path: str) -> DesignPart:
    """Partition ``k``'s design rows. ``parts``: every partition (only those its earlier answers come
    from are read); ``at``/``prev``: its augmented rows and their earlier answers as *global* row
    indices (``offsets[j]`` = the first global row of partition ``j``)."""
    own = parts[k].rows
    n = len(own)
    local_prev = np.full(prev.shape, -1, dtype=np.int64)
    foreign = (prev >= 0) & ((prev < offsets[k]) | (prev >= offsets[k] + n))
    mine = (prev >= 0) & ~foreign
    local_prev[mine] = prev[mine] - offsets[k]
    data = own
    for e in np.unique(prev[foreign]):  # a prompt whose rows span partitions (rare): append those answers
        j = int(np.searchsorted(offsets, e, side="right") - 1)
        data = _with_rows(data, parts[j].rows, np.array([e - offsets[j]]))
        local_prev[prev == e] = len(data) - 1
    scorer = state.scorer(worker_embedder(embedder_spec, embedders_dir))
    vecs, p_at, r_at, _ = scorer._embed_codes(data, _cache(cache_path))
    none = np.full((n, MAX_EARLIER), -1, dtype=np.int64)
    X_alone = scorer.design_rows(vecs, p_at, r_at, data, np.arange(n), none)
    X_aug = (scorer.design_rows(vecs, p_at, r_at, data, at - offsets[k], local_prev) if len(at)
             else np.zeros((0, X_alone.shape[1]), dtype=np.float32))
    return DesignPart(X_alone, X_aug)


def _blocks(designs: Sequence[DesignPart]) -> list[np.ndarray]:
    """The design rows' blocks in the single-process order (their concatenation is the design matrix):
    every partition's rows alone, then every partition's augmented rows."""
    return [d.X_alone for d in designs] + [d.X_aug for d in designs]


def fold_task(params: dict[str, Any], designs: list[DesignPart], y: np.ndarray, in_train: np.ndarray,
              cats: list[int], max_rounds: int, early_stopping_rounds: int, threads: int
              ) -> tuple[FoldFit, np.ndarray]:
    """One cross-validation fold on a worker: (the early-stopped booster, its predictions for the
    validation rows). The training and validation rows are cut block by block (:func:`_split`), so the
    whole matrix is never built beside them."""
    X_train, X_valid = _split(designs, in_train)
    fit = fit_split({**params, "num_threads": threads}, X_train, y[in_train], X_valid, y[~in_train], cats,
                    max_rounds, early_stopping_rounds)
    del X_train
    return fit, np.asarray(fit.booster.predict(X_valid, num_iteration=fit.booster.best_iteration))


def _split(designs: Sequence[DesignPart], in_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X[in_train], X[~in_train])`` for ``X = np.concatenate(_blocks(designs))``, built block by block."""
    blocks = _blocks(designs)
    n_rows = sum(len(b) for b in blocks)
    if len(in_train) != n_rows:
        raise ValueError(f"{len(in_train)} fold flags for {n_rows} design rows")
    n_cols, dtype = blocks[0].shape[1], blocks[0].dtype
    X_train = np.empty((int(in_train.sum()), n_cols), dtype=dtype)
    X_valid = np.empty((n_rows - len(X_train), n_cols), dtype=dtype)
    start = t = v = 0
    for b in blocks:
        mask = in_train[start : start + len(b)]
        k = int(mask.sum())
        X_train[t : t + k] = b[mask]
        X_valid[v : v + len(b) - k] = b[~mask]
        start, t, v = start + len(b), t + k, v + len(b) - k
    return X_train, X_valid


def _x_alone(d: DesignPart) -> np.ndarray:
    return d.X_alone


def _x_aug(d: DesignPart) -> np.ndarray:
    return d.X_aug


# ---- on the client --------------------------------------------------------------------------------


@dataclass
class DaskAnswers:
    """The scorer rows of a Dask training: one future per partition (:class:`AnswerPart`, on a worker)."""

    parts: list[Any]
    embedder_spec: str
    embedders_dir: str
    cache_path: str
    summaries: list[PartSummary] = field(default_factory=list)

    def summarize(self, client: Any) -> list[PartSummary]:
        """Every partition's :class:`PartSummary`, computed once."""
        if not self.summaries:
            futs = [client.submit(summarize, p, self.embedder_spec, self.embedders_dir, self.cache_path, pure=False)
                    for p in self.parts]
            self.summaries = list(client.gather(futs))
        return self.summaries

    def has_rows(self, client: Any) -> bool:
        """Whether any partition has a scorer row (a logged answer with its quality)."""
        return any(len(s.y) for s in self.summarize(client))


def fit_scorer_on_dask(client: Any, answers: DaskAnswers, scorer: ResponseScorer, report: Report | None = None,
                       echo: Any = print) -> tuple[ResponseScorer, dict[int, int]]:
    """Fit ``scorer`` (its embedder and params set) on the partitions' rows (see module docstring): the
    same rows, PCAs, augmented rows, folds and fold boosters as :meth:`ResponseScorer.fit` on the whole
    logs in one process (barring a 64-bit key collision; the mean costs that order the earlier answers
    are sums over partitions, equal up to rounding); the final booster is data-parallel. Returns the
    scorer and the fold of each prompt text's key (:func:`~llmroute.training.scorer_rows.text_keys`);
    the scorer's ``prompt_fold_`` is left empty for the caller to fill for the prompts it holds."""
    report = report or no_report()
    p = scorer.params
    t0 = time.perf_counter()
    report(0.0, "embedding prompts and answers")
    sums = answers.summarize(client)
    n_rows = sum(len(s.y) for s in sums)
    scorer.n_skipped_ = sum(s.n_skipped for s in sums)
    if n_rows < 20:
        raise ValueError(f"scorer training needs at least 20 rows with a response and a quality, got {n_rows}")
    models = sorted({m for s in sums for m in s.models})
    col = {m: j for j, m in enumerate(models)}
    model = np.concatenate([np.array([col[m] for m in s.models], dtype=np.int32)[s.model] for s in sums])
    y = np.concatenate([s.y for s in sums])
    if len(np.unique(y)) < 2:
        raise ValueError("scorer training rows are all successes or all failures: nothing to learn")
    cost_sum, cost_n = np.zeros(len(models)), np.zeros(len(models))
    for s in sums:
        cols = [col[m] for m in s.models]
        np.add.at(cost_sum, cols, s.cost_sum)
        np.add.at(cost_n, cols, s.cost_n)
    cost_of = np.where(cost_n > 0, cost_sum / np.maximum(cost_n, 1), np.inf)
    cost_of[~np.isfinite(cost_of)] = np.inf
    scorer.models_ = models
    prior = pd.Series(y).groupby(model).mean()
    scorer.model_prior_ = {models[int(k)]: float(v) for k, v in prior.items()}

    report(0.1, "PCA bases")
    fk = np.concatenate([s.focus_keys for s in sums])
    _, first = np.unique(fk, return_index=True)
    fvecs = np.concatenate([s.focus_vecs for s in sums])[np.sort(first)]
    sel = pca_sample(fk[np.sort(first)], PCA_SAMPLE)
    scorer.p_mean_, scorer.p_components_ = _pca(fvecs[sel], p.embedding_dims, p.seed)
    del fvecs
    ak = np.unique(np.concatenate([s.answer_keys for s in sums]))
    want = ak[pca_sample(ak, PCA_SAMPLE)]
    futs = [client.submit(answer_vectors, part, want, answers.embedder_spec, answers.embedders_dir,
                          answers.cache_path, pure=False) for part in answers.parts]
    got = client.gather(futs)
    keys = np.concatenate([k for k, _ in got])
    _, first = np.unique(keys, return_index=True)
    avecs = np.concatenate([v for _, v in got])[np.sort(first)]
    del got
    scorer.r_mean_, scorer.r_components_ = _pca(avecs, p.embedding_dims, p.seed)
    del avecs
    echo(f"dask: answer scorer: {n_rows} rows in {len(answers.parts)} partitions, PCAs on {len(sel)} "
         f"prompts and {len(want)} answers ({time.perf_counter() - t0:.0f} s)")

    report(0.2, "earlier answers")
    group = pd.factorize(np.concatenate([s.group for s in sums]))[0]
    offsets = np.concatenate([[0], np.cumsum([len(s.y) for s in sums])]).astype(np.int64)
    at = np.zeros(0, dtype=np.int64)
    prev = np.zeros((0, MAX_EARLIER), dtype=np.int64)
    if p.agreement:
        at, prev = draw_earlier(group, model, cost_of, np.random.default_rng(p.seed))
    state = ScorerState(p, models, scorer.model_prior_, scorer.p_mean_, scorer.p_components_, scorer.r_mean_,
                        scorer.r_components_)

    report(0.25, "features")
    state_f = broadcast(client, state)
    designs = []
    for k in range(len(answers.parts)):
        mine = (at >= offsets[k]) & (at < offsets[k + 1])
        froms = np.searchsorted(offsets, np.unique(prev[mine][prev[mine] >= 0]), side="right") - 1
        needs = {int(j) for j in froms} | {k}
        refs = [answers.parts[j] if j in needs else None for j in range(len(answers.parts))]
        designs.append(client.submit(design_part, k, refs, offsets[:-1], at[mine], prev[mine], state_f,
                                     answers.embedder_spec, answers.embedders_dir, answers.cache_path, pure=False))
    shapes = client.gather([client.submit(_shape, d, pure=False) for d in designs])
    echo(f"dask: answer scorer: design matrix built on the workers ({time.perf_counter() - t0:.0f} s)")

    idx = np.concatenate([np.arange(n_rows), at])
    yy = y[idx]
    groups = group[idx]
    n_cols = shapes[0][2]
    cats = [n_cols - 1]
    n_folds = max(2, min(p.folds, int(group.max()) + 1))
    splits = list(GroupKFold(n_folds).split(np.zeros((len(yy), 1)), yy, groups))
    report(0.35, "CV folds")
    yf = broadcast(client, yy)
    threads = _threads(client)
    futs = []
    for tr, _ in splits:
        mask = np.zeros(len(yy), dtype=bool)
        mask[tr] = True
        futs.append(client.submit(fold_task, p.lgb_params(), designs, yf, mask, cats, p.max_rounds,
                                  p.early_stopping_rounds, threads, pure=False))
    from distributed import as_completed

    for done, _ in enumerate(as_completed(futs), start=1):
        report(0.35 + 0.45 * done / n_folds, f"CV fold {done}/{n_folds}")
    results = client.gather(futs)
    oof = np.full(len(yy), np.nan)
    fold_of_group = np.full(int(group.max()) + 1, -1, dtype=np.int64)
    for f, ((_, va), (_, pred)) in enumerate(zip(splits, results)):
        oof[va] = pred
        fold_of_group[groups[va]] = f
    fits = [fit for fit, _ in results]
    echo(f"dask: answer scorer: {n_folds} cross-validation boosters in {time.perf_counter() - t0:.0f} s "
         f"(best iterations {[f.best_iteration for f in fits]})")
    scorer._set_cv(fits, {}, yy, oof, n_rows)
    all_keys = np.concatenate([s.group for s in sums])
    uniq, first = np.unique(all_keys, return_index=True)
    fold_of_key = dict(zip(uniq.tolist(), fold_of_group[group[first]].tolist()))

    report(0.8, "final model")
    scorer.booster_ = _fit_final(client, designs, shapes, yy, p.lgb_params(), cats, scorer.n_rounds_)
    client.cancel([yf, state_f, *designs])
    echo(f"dask: answer scorer: final booster ({scorer.n_rounds_} rounds, lightgbm.dask) in "
         f"{time.perf_counter() - t0:.0f} s")
    return scorer, fold_of_key


def _shape(d: DesignPart) -> tuple[int, int, int]:
    return len(d.X_alone), len(d.X_aug), d.X_alone.shape[1]


def _threads(client: Any) -> int:
    info = client.scheduler_info()["workers"]
    return max(1, min(int(w.get("nthreads", 1)) for w in info.values())) if info else 1


def _fit_final(client: Any, designs: list[Any], shapes: list[tuple[int, int, int]], yy: np.ndarray,
               params: dict[str, Any], cats: list[int], rounds: int) -> lgb.Booster:
    """The final booster with :mod:`lightgbm.dask`: the design rows in the single-process order, cut into
    one contiguous chunk per worker (as the quality model's final fit cuts its matrix), so each worker's
    share is the same rows whichever worker read which partition; the chunks move worker to worker."""
    import dask.array as da
    from lightgbm.dask import DaskLGBMClassifier

    n_cols = shapes[0][2]
    blocks = [da.from_delayed(client.submit(getter, d, pure=False), shape=(shape[which], n_cols), dtype=np.float32)
              for getter, which in ((_x_alone, 0), (_x_aug, 1))
              for d, shape in zip(designs, shapes) if shape[which]]
    workers = max(1, len(client.scheduler_info()["workers"]))
    rows = max(1, -(-len(yy) // workers))
    dX = da.concatenate(blocks).rechunk((rows, n_cols))
    dy = da.from_array(yy.astype(np.int32), chunks=rows)
    dX, dy = client.persist([dX, dy])
    est = DaskLGBMClassifier(client=client, n_estimators=rounds, **sklearn_params(params))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Parameter (n_jobs|num_threads) will be ignored")
        est.fit(dX, dy, categorical_feature=cats)
    return est.booster_


# ---- the cascade's answer scores on the workers ----------------------------------------------------


def score_cells(parts: list[AnswerPart | None], prompt_ids: list[str], prompts: list[str], models: list[str],
                earlier: list[tuple[str, ...]], folds: np.ndarray, state: ScorerState, boosters: list[lgb.Booster],
                embedder_spec: str, embedders_dir: str, cache_path: str) -> np.ndarray:
    """Out-of-fold scores of cells (prompt id, model, earlier models) whose answers lie in ``parts``:
    what :meth:`ResponseScorer.score_oof` gives with the answers looked up by (prompt id, model)."""
    want = set(prompt_ids)
    answer: dict[tuple[str, str], str] = {}
    for part in parts:
        if part is None:
            continue
        r = part.rows
        codes = [c for c, pid in enumerate(part.prompt_ids) if pid in want]
        for i in np.nonzero(np.isin(part.prompt_id, codes))[0]:
            answer[(part.prompt_ids[part.prompt_id[i]], r.models[r.model[i]])] = r.responses[r.response[i]]
    scorer = state.scorer(worker_embedder(embedder_spec, embedders_dir))
    responses = [answer[(q, m)] for q, m in zip(prompt_ids, models)]
    ctx = [tuple((e, answer[(q, e)]) for e in prev) for q, prev in zip(prompt_ids, earlier)]
    X = scorer.features(prompts, responses, models, ctx, _cache(cache_path))
    out = np.zeros(len(prompts))
    for f, b in enumerate(boosters):
        rows = np.nonzero(folds == f)[0]
        if len(rows):
            out[rows] = b.predict(X[rows], num_iteration=b.best_iteration)
    return out


class DaskChainScores(ChainScores):
    """:class:`~llmroute.training.cascade_fit.ChainScores` whose cells are scored on the workers that
    hold their answers (the client sends prompt ids, model names and folds, never an answer)."""

    def __init__(self, client: Any, answers: DaskAnswers, scorer: ResponseScorer, prompt_ids: Sequence[str],
                 prompts: Sequence[str], models: Sequence[str], fold_of_key: dict[int, int]) -> None:
        super().__init__(scorer, prompts, np.zeros((0, 0), dtype=object), models, None)
        self.client, self.answers, self.prompt_ids = client, answers, list(prompt_ids)
        sums = answers.summarize(client)
        holders: dict[str, set[int]] = {}
        for k, s in enumerate(sums):
            for pid in s.prompt_ids:
                holders.setdefault(pid, set()).add(k)
        self.holders = {pid: tuple(sorted(ks)) for pid, ks in holders.items() if pid in set(self.prompt_ids)}
        keys = text_keys(list(prompts)).tolist()
        self.fold = np.array([fold_of_key.get(k, -1) for k in keys], dtype=np.int64)
        missing = int((self.fold < 0).sum())
        if missing:
            raise ValueError(f"{missing} prompts were not in the scorer's training logs (e.g. {prompts[int(np.argmax(self.fold < 0))][:60]!r})")
        self.state = broadcast(self.client, ScorerState(
            scorer.params, scorer.models_, scorer.model_prior_, scorer.p_mean_, scorer.p_components_,
            scorer.r_mean_, scorer.r_components_))
        self.boosters = broadcast(self.client, scorer.fold_boosters_)

    def need(self, cells: set[tuple[int, str, tuple[str, ...]]]) -> None:
        todo = [c for c in cells if c not in self.values]
        by_holder: dict[tuple[int, ...], list[tuple[int, str, tuple[str, ...]]]] = {}
        for c in todo:
            by_holder.setdefault(self.holders[self.prompt_ids[c[0]]], []).append(c)
        futs, batches = [], []
        a = self.answers
        for ks, group in by_holder.items():
            parts = [a.parts[j] if j in ks else None for j in range(len(a.parts))]
            for start in range(0, len(group), 50_000):
                batch = group[start : start + 50_000]
                futs.append(self.client.submit(
                    score_cells, parts, [self.prompt_ids[i] for i, _, _ in batch], [self.prompts[i] for i, _, _ in batch],
                    [m for _, m, _ in batch], [prev for _, _, prev in batch], self.fold[[i for i, _, _ in batch]],
                    self.state, self.boosters, a.embedder_spec, a.embedders_dir, a.cache_path, pure=False))
                batches.append(batch)
        for batch, p in zip(batches, self.client.gather(futs)):
            self.values.update(zip(batch, p.tolist()))


def getitem(obj: Any, i: int) -> Any:
    """``obj[i]`` (a worker task: one result of a task that returns several)."""
    return operator.getitem(obj, i)


def has_answer_matrix(sums: Sequence[PartSummary], prompt_ids: Sequence[str], models: Sequence[str]) -> np.ndarray:
    """(prompts, models) bool: which calls have a scorer row (a logged answer and quality) on the workers."""
    pos = {p: i for i, p in enumerate(prompt_ids)}
    col = {m: j for j, m in enumerate(models)}
    out = np.zeros((len(prompt_ids), len(models)), dtype=bool)
    for s in sums:
        rows = np.array([pos.get(p, -1) for p in s.prompt_ids], dtype=np.int64)[s.prompt_id]
        cols = np.array([col.get(m, -1) for m in s.models], dtype=np.int64)[s.model]
        ok = (rows >= 0) & (cols >= 0)
        out[rows[ok], cols[ok]] = True
    return out
