"""A saved LightGBM model predicted through LightGBM's C library (router.native_booster) gives exactly the
Python package's predictions, and loading it imports neither the package nor what the package imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmroute.router.native_booster import NativeBooster, NativeBoosterError, lightgbm_library_path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small binary model like the quality model's: numeric columns with NaNs and a categorical last column."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    X[:, 5] = rng.integers(0, 12, size=600)
    X[rng.random(600) < 0.1, 2] = np.nan
    y = ((X[:, 0] + (X[:, 5] % 3 == 0) + rng.normal(scale=0.5, size=600)) > 0.5).astype(float)
    params = {"objective": "binary", "num_leaves": 7, "learning_rate": 0.1, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[5]), num_boost_round=40)
    path = tmp_path_factory.mktemp("native-booster") / "model.txt"
    booster.save_model(str(path))
    return path


def _rows(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 5] = rng.integers(0, 14, size=n)  # 12 and 13: categories the model never saw
    X[rng.random(n) < 0.15, 1] = np.nan
    X[rng.random(n) < 0.05, 5] = np.nan
    return X


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictions_are_the_packages_bit_for_bit(model_file: Path, threads: int, dtype: type) -> None:
    import lightgbm as lgb

    ours, theirs = NativeBooster.from_file(model_file), lgb.Booster(model_file=str(model_file))
    X = _rows(500).astype(dtype)
    got, want = ours.predict(X, num_threads=threads), theirs.predict(X, num_threads=threads)
    assert got.dtype == np.float64 and got.shape == (500,)
    assert np.array_equal(got, want)
    assert np.array_equal(ours.predict(X[:1], num_threads=threads), theirs.predict(X[:1], num_threads=threads))
    # a non-contiguous view and an integer matrix are converted as the package converts them
    assert np.array_equal(ours.predict(X[::2], num_threads=threads), theirs.predict(X[::2], num_threads=threads))
    ints = np.nan_to_num(X).astype(np.int64)
    assert np.array_equal(ours.predict(ints, num_threads=threads), theirs.predict(ints, num_threads=threads))


def test_it_keeps_the_models_text_and_counts_its_trees(model_file: Path, tmp_path: Path) -> None:
    import lightgbm as lgb

    ours = NativeBooster.from_file(model_file)
    assert ours.num_trees() == lgb.Booster(model_file=str(model_file)).num_trees() == 40
    assert ours.num_feature == 6
    ours.save_model(tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_bytes() == model_file.read_bytes()
    again = NativeBooster.from_string(ours.model_to_string())
    X = _rows(50)
    assert np.array_equal(again.predict(X), ours.predict(X))


def test_bad_input_is_refused_with_what_was_expected(model_file: Path, tmp_path: Path) -> None:
    ours = NativeBooster.from_file(model_file)
    with pytest.raises(ValueError, match="the model has 6 features, the matrix 5 columns"):
        ours.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="expected a 2-D matrix, got 1 dimension"):
        ours.predict(np.zeros(6))
    broken = tmp_path / "broken.txt"
    broken.write_text("tree\nversion=v4\nnot a model at all\n")
    with pytest.raises(NativeBoosterError, match=r"broken\.txt: not a LightGBM model LightGBM can load"):
        NativeBooster.from_file(broken)


def test_the_library_is_the_packages_own() -> None:
    import lightgbm.libpath

    assert lightgbm_library_path().resolve() == Path(lightgbm.libpath._find_lib_path()[0]).resolve()


PROBE = """
import json, sys
import numpy as np
from llmroute.router.native_booster import NativeBooster
b = NativeBooster.from_file(sys.argv[1])
p = b.predict(np.zeros((3, b.num_feature), dtype=np.float32), num_threads=1)
heavy = sorted(m for m in ("lightgbm", "sklearn", "pandas", "scipy", "pyarrow", "narwhals") if m in sys.modules)
print("PROBE" + json.dumps({"n": len(p), "heavy": heavy}))
"""


def test_loading_and_predicting_import_no_lightgbm_package(model_file: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(model_file)], capture_output=True, text=True,
                         env=dict(os.environ), timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    res = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE"))[len("PROBE"):])
    assert res == {"n": 3, "heavy": []}
