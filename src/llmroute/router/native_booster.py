"""A saved LightGBM model predicted through LightGBM's own C library, without its Python package.

``import lightgbm`` imports scikit-learn, pandas, SciPy, narwhals and PyArrow (its compatibility layer
looks for every data-frame library it can take), about 160 MiB of a serving process that only ever
predicts NumPy matrices with a loaded model. :class:`NativeBooster` loads the same shared library
the package uses (``lib_lightgbm`` inside the installed ``lightgbm`` package, found without importing
it) through :mod:`ctypes` and calls the same C functions that ``lightgbm.Booster`` calls for a model
file and a 2-D NumPy matrix: ``LGBM_BoosterCreateFromModelfile`` / ``LGBM_BoosterLoadModelFromString``
and ``LGBM_BoosterPredictForMat`` with the same arguments (normal prediction, every iteration, the
``num_threads`` parameter string). Guarantee: its predictions are bit for bit those of
``lightgbm.Booster(model_file=...).predict(X, num_threads=n)`` on the same file
(``tests/router/test_native_booster.py``).

Training and everything else still uses the ``lightgbm`` package; only loading and predicting a saved
model goes through here. Like the package, the C calls release the GIL.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

_PREDICT_NORMAL = 0
_DTYPE_FLOAT32, _DTYPE_FLOAT64 = 0, 1
_ROW_MAJOR = 1


class BoosterPredictor(Protocol):
    """What the router and the answer scorer need of a LightGBM model: predict a 2-D matrix, save it.
    Both ``lightgbm.Booster`` (just trained) and :class:`NativeBooster` (loaded) are one."""

    def predict(self, data: Any, *, num_threads: int = ...) -> Any:  # pragma: no cover - a protocol
        ...

    def save_model(self, filename: str | Path) -> Any:  # pragma: no cover - a protocol
        ...


class NativeBoosterError(RuntimeError):
    """LightGBM's C library refused a call; the message is LightGBM's own last error."""


def lightgbm_library_path() -> Path:
    """The ``lib_lightgbm`` shared library of the installed ``lightgbm`` package (the places its own
    ``libpath`` looks), found without importing the package. Raises :class:`NativeBoosterError` when
    the package or its library is missing."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise NativeBoosterError("the lightgbm package is not installed: it ships the library that predicts saved models")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    name = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}.get(sys.platform, "lib_lightgbm.so")
    places = [pkg.parent / name, pkg / "bin" / name, pkg / "lib" / name]
    for place in places:
        if place.is_file():
            return place
    raise NativeBoosterError("cannot find LightGBM's library in " + ", ".join(map(str, places)))


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            lib = ctypes.cdll.LoadLibrary(str(lightgbm_library_path()))
            lib.LGBM_GetLastError.restype = ctypes.c_char_p
            _lib = lib
        return _lib


def _check(lib: ctypes.CDLL, ret: int) -> None:
    if ret != 0:
        raise NativeBoosterError(lib.LGBM_GetLastError().decode("utf-8", "replace"))


class NativeBooster:
    """A loaded LightGBM model (see the module docstring). Build it with :meth:`from_file` or
    :meth:`from_string`; the model's text is kept so :meth:`save_model` writes back exactly what was
    loaded."""

    def __init__(self, model_str: str, handle: ctypes.c_void_p, num_feature: int, num_iterations: int) -> None:
        self._model_str = model_str
        self._handle: ctypes.c_void_p | None = handle
        self.num_feature = num_feature
        self.num_iterations = num_iterations

    @classmethod
    def from_string(cls, model_str: str) -> NativeBooster:
        """The model in LightGBM's text format ``model_str`` (what ``Booster.model_to_string()`` gives)."""
        lib = _library()
        handle = ctypes.c_void_p()
        iters = ctypes.c_int(0)
        _check(lib, lib.LGBM_BoosterLoadModelFromString(model_str.encode("utf-8"), ctypes.byref(iters), ctypes.byref(handle)))
        n_feat = ctypes.c_int(0)
        try:
            _check(lib, lib.LGBM_BoosterGetNumFeature(handle, ctypes.byref(n_feat)))
        except NativeBoosterError:
            lib.LGBM_BoosterFree(handle)
            raise
        return cls(model_str, handle, int(n_feat.value), int(iters.value))

    @classmethod
    def from_file(cls, path: str | Path) -> NativeBooster:
        """The model saved at ``path`` (``Booster.save_model``); errors name the file."""
        path = Path(path)
        try:
            return cls.from_string(path.read_text(encoding="utf-8"))
        except NativeBoosterError as exc:
            raise NativeBoosterError(f"{path}: not a LightGBM model LightGBM can load: {exc}") from None

    def predict(self, data: Any, *, num_threads: int = 0) -> np.ndarray:
        """(n,) probabilities (for a binary model; the model's output for others) of the rows of the 2-D
        matrix ``data``, every iteration, with ``num_threads`` OpenMP threads (0: OpenMP's default).
        ``data`` is passed as float32 or float64 like the package does (other dtypes as float32)."""
        X = np.asarray(data)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D matrix, got {X.ndim} dimension(s)")
        if X.shape[1] != self.num_feature:
            raise ValueError(f"the model has {self.num_feature} features, the matrix {X.shape[1]} columns")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float32)
        X = np.ascontiguousarray(X)
        lib = _lib or _library()
        n = int(X.shape[0])
        n_preds = ctypes.c_int64(0)
        _check(lib, lib.LGBM_BoosterCalcNumPredict(
            self._handle, ctypes.c_int(n), ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.byref(n_preds),
        ))
        out = np.empty(int(n_preds.value), dtype=np.float64)
        got = ctypes.c_int64(0)
        _check(lib, lib.LGBM_BoosterPredictForMat(
            self._handle, X.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(_DTYPE_FLOAT32 if X.dtype == np.float32 else _DTYPE_FLOAT64),
            ctypes.c_int32(n), ctypes.c_int32(X.shape[1]), ctypes.c_int(_ROW_MAJOR),
            ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(-1),
            f"num_threads={int(num_threads)}".encode(), ctypes.byref(got),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ))
        if got.value != out.size:
            raise NativeBoosterError(f"LightGBM wrote {got.value} predictions, {out.size} expected")
        return out if out.size == n else out.reshape(n, -1)

    def num_trees(self) -> int:
        """Trees in the model (iterations x trees per iteration)."""
        lib = _lib or _library()
        out = ctypes.c_int(0)
        _check(lib, lib.LGBM_BoosterNumberOfTotalModel(self._handle, ctypes.byref(out)))
        return int(out.value)

    def model_to_string(self) -> str:
        """The model's text, as loaded."""
        return self._model_str

    def save_model(self, filename: str | Path) -> NativeBooster:
        """Write the model's text, as loaded, to ``filename``."""
        Path(filename).write_text(self._model_str, encoding="utf-8")
        return self

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.LGBM_BoosterFree(handle)
