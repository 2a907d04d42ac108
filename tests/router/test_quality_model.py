"""The learned quality model on synthetic data whose outcome depends on an embedding coordinate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from llmroute.router.quality_model import QualityModel, QualityModelParams
from tests.router.helpers import ALLOWED_ROUTER_SUFFIXES

MODELS = ("left", "right", "coin")
PARAMS = QualityModelParams(
    target=0.5, folds=3, max_rounds=300, early_stopping_rounds=30, min_child_samples=20, seed=0
)


def synthetic(n: int, seed: int, d: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model 'left' succeeds when coordinate 0 is negative, 'right' when positive, 'coin' at random."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb.astype(np.float32)
    feats = rng.standard_normal((n, 9)).astype(np.float32)
    x = emb[:, 0]
    labels = np.column_stack([x < 0, x > 0, rng.random(n) < 0.7]).astype(float)
    flip = rng.random(labels.shape) < 0.05  # a little label noise
    labels = np.where(flip, 1 - labels, labels)
    quality = labels * 0.8 + 0.1  # graded quality; the target 0.5 separates it
    quality[rng.random(quality.shape) < 0.1] = np.nan  # partial logs
    return emb, feats, quality, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[QualityModel, tuple[np.ndarray, ...]]:
    data = synthetic(300, seed=0)
    emb, feats, quality, _ = data
    return QualityModel(MODELS, PARAMS).fit(emb, feats, quality), data


def test_out_of_fold_probabilities_beat_chance(fitted: tuple[QualityModel, tuple[np.ndarray, ...]]) -> None:
    qm, (_, _, quality, labels) = fitted
    oof = qm.oof_probs_
    assert oof.shape == quality.shape and not np.isnan(oof).any()
    assert np.all((oof >= 0) & (oof <= 1))
    known = ~np.isnan(quality[:, :2])
    auc = roc_auc_score(labels[:, :2][known], oof[:, :2][known])
    assert auc > 0.7, auc
    assert np.isfinite(qm.cv_log_loss_) and qm.n_rounds_ >= 1


def test_predictions_on_new_prompts(fitted: tuple[QualityModel, tuple[np.ndarray, ...]]) -> None:
    qm, _ = fitted
    emb, feats, _, labels = synthetic(150, seed=1)
    p = qm.predict(emb, feats)
    assert p.shape == (150, 3)
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(labels[:, :2].ravel(), p[:, :2].ravel()) > 0.7
    # the two mirrored models disagree where coordinate 0 is far from zero
    far = np.abs(emb[:, 0]) > 0.3
    assert np.mean((p[far, 1] > p[far, 0]) == (emb[far, 0] > 0)) > 0.8


def test_save_and_load_give_identical_predictions(
    fitted: tuple[QualityModel, tuple[np.ndarray, ...]], tmp_path: Path
) -> None:
    qm, _ = fitted
    qm.save(tmp_path, "q")
    assert {f.suffix for f in tmp_path.iterdir()} <= ALLOWED_ROUTER_SUFFIXES
    for npz in tmp_path.glob("*.npz"):
        with np.load(npz, allow_pickle=False) as z:  # no object arrays hidden inside
            assert all(z[k].dtype != object for k in z.files)
    again = QualityModel.load(tmp_path, "q")
    emb, feats, _, _ = synthetic(100, seed=2)
    assert again.models == qm.models
    np.testing.assert_array_equal(again.predict(emb, feats), qm.predict(emb, feats))


@pytest.mark.slow  # fits a quality model with a task classifier (4 s on a busy machine)
def test_task_labels_and_hints() -> None:
    emb, feats, quality, _ = synthetic(240, seed=3)
    tasks = np.asarray(["pos" if x > 0 else "neg" for x in emb[:, 0]], dtype=object)
    tasks[::7] = None  # some prompts have no task label
    qm = QualityModel(MODELS, PARAMS).fit(emb, feats, quality, tasks)
    assert qm.tasks_ == ["neg", "pos"]
    new_emb, new_feats, _, _ = synthetic(20, seed=4)
    plain = qm.predict(new_emb, new_feats)
    hinted = qm.predict(new_emb, new_feats, ["pos"] * 10 + [None] * 5 + ["unknown-task"] * 5)
    assert hinted.shape == plain.shape and np.all((hinted >= 0) & (hinted <= 1))
    # rows without a usable hint are predicted as without hints
    np.testing.assert_array_equal(hinted[10:], plain[10:])


def test_fit_rejects_bad_inputs() -> None:
    emb, feats, quality, _ = synthetic(30, seed=5)
    with pytest.raises(ValueError, match="3 columns for 2 models"):
        QualityModel(("a", "b"), PARAMS).fit(emb, feats, quality)
    with pytest.raises(ValueError, match="no known outcomes"):
        QualityModel(MODELS, PARAMS).fit(emb, feats, np.full_like(quality, np.nan))


def test_reference_folds_cap_the_neighbour_search() -> None:
    """Folds within the cap are unchanged; above it each training side is a sorted seeded sample of
    itself, of the cap's size, the same for the same seed, and the validation side is untouched."""
    from sklearn.model_selection import KFold

    from llmroute.router.quality_model import reference_folds

    folds = list(KFold(5, shuffle=True, random_state=0).split(np.arange(200)))
    same = reference_folds(folds, 160, seed=0)
    assert all(a is tr and b is va for (a, b), (tr, va) in zip(same, folds))
    cut = reference_folds(folds, 50, seed=0)
    for (tr, va), (ctr, cva) in zip(folds, cut):
        assert len(ctr) == 50 and np.all(np.diff(ctr) > 0) and set(ctr) <= set(tr)
        assert cva is va
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(cut, reference_folds(folds, 50, seed=0)))
    assert not np.array_equal(cut[0][0], cut[1][0])


def test_fit_searches_capped_reference_folds() -> None:
    """The quality model hands its backend the capped folds: each validation prompt's neighbour
    statistics come from at most max_reference_prompts prompts of the other folds."""
    from llmroute.router.quality_model import LocalBackend

    seen: list[list[tuple[np.ndarray, np.ndarray]]] = []

    class Recording(LocalBackend):
        def neighbour_stats(self, emb, success, folds):  # type: ignore[no-untyped-def]
            seen.append(folds)
            return super().neighbour_stats(emb, success, folds)

    emb, feats, quality, _ = synthetic(120, seed=1)
    params = QualityModelParams(target=0.5, folds=3, max_rounds=30, early_stopping_rounds=5, min_child_samples=10,
                                max_reference_prompts=40)
    QualityModel(MODELS, params, Recording()).fit(emb, feats, quality)
    (folds,) = seen
    assert [len(tr) for tr, _ in folds] == [40, 40, 40]
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(120))
    assert all(not set(tr) & set(va) for tr, va in folds)


def test_capped_rows() -> None:
    from llmroute.router.quality_model import capped_rows

    rows = np.arange(10, 40)
    assert capped_rows(rows, 30, [0]) is rows
    cut = capped_rows(rows, 12, [0, 1])
    assert len(cut) == 12 and np.all(np.diff(cut) > 0) and set(cut) <= set(rows)
    np.testing.assert_array_equal(cut, capped_rows(rows, 12, [0, 1]))
