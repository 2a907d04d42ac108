"""One thread for small routing calls: OpenMP and BLAS thread limits the router applies itself.

Routing a few prompts is a handful of small matrix products (the neighbour search is a (1, 256) x
(256, n) product) and a LightGBM prediction of a few rows. Multi-threaded, they cost more than they
save: OpenBLAS wakes its threads for each product and they spin against the caller, so one in-process
``route()`` took ~9.5 ms of CPU with the default thread settings against ~2.7 ms with one thread
(2-core machine; the product alone 636 vs 48 us). A library cannot ask its users to set
``OPENBLAS_NUM_THREADS=1`` before importing NumPy, so :class:`~llmroute.router.router.Router` runs
every call of at most :data:`SMALL_BATCH` prompts made from the main thread inside :func:`one_thread`
(calls from other threads are left to whoever runs those threads: the service limits its compute
threads itself, :mod:`llmroute.serving.compute`):

- OpenMP (LightGBM, torch's CPU kernels): its thread count is a per-thread setting, so the calling
  thread's is set to 1 and restored on the way out; other threads are not affected;
- BLAS (OpenBLAS, MKL, ...): its thread count is process-wide, so it is set to 1 when the first of
  any concurrent routing calls starts and set back when the last one ends (reference counted: calls
  in several threads never restore it under each other) to the count the process had when the router
  first routed (OpenBLAS reports its count reliably only to the main thread, so it is read once).
  While routing runs, BLAS products of other threads of the process run on one thread too.
  :func:`set_blas_baseline` changes what is set back (the service pins it to its own limit).

Big batches (evaluation, training) keep every thread. The libraries are found once, at the first
call (threadpoolctl's scan of the loaded shared libraries, ~50 ms); nothing happens at import.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SMALL_BATCH = 64


class _Limits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._openmp: list[Any] | None = None
        self._blas: list[Any] = []
        self._depth = 0
        self._saved: list[int] = []
        self._baseline: int | None = None

    def _libraries(self) -> list[Any]:
        with self._lock:
            if self._openmp is None:
                from threadpoolctl import ThreadpoolController

                controller = ThreadpoolController()
                self._blas = list(controller.select(user_api="blas").lib_controllers)
                self._openmp = list(controller.select(user_api="openmp").lib_controllers)
                # OpenBLAS (0.3.31) reports its count reliably only to the main thread, while a count set
                # from any thread applies to all: remember the one seen now and restore that one
                self._saved = [lib.get_num_threads() for lib in self._blas]
            return self._openmp

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        openmp = self._libraries()
        if (
            threading.current_thread() is not threading.main_thread()
            or self._baseline is not None
            or getattr(self._local, "inside", False)
        ):
            # only on the main thread (OpenBLAS 0.3.31 applies a count set from another thread to that
            # thread alone, and switching it on every call from the service's worker threads tripled its
            # CPU per request: a service limits its worker threads itself, llmroute.serving.compute);
            # not when the process pinned its own limit; nested: the outer call holds the limits
            yield
            return
        self._local.inside = True
        before = [lib.get_num_threads() for lib in openmp]
        for lib, n in zip(openmp, before):
            if n != 1:
                lib.set_num_threads(1)
        with self._lock:
            self._depth += 1
            if self._depth == 1 and self._baseline is None:  # a pinned baseline is the process's own limit
                for lib in self._blas:
                    lib.set_num_threads(1)
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._baseline is None:
                    for lib, n in zip(self._blas, self._saved):
                        lib.set_num_threads(n)
            for lib, n in zip(openmp, before):
                if n != 1:
                    lib.set_num_threads(n)
            self._local.inside = False

    def set_blas_baseline(self, threads: int | None) -> None:
        self._libraries()
        with self._lock:
            self._baseline = threads
            if self._depth == 0 and threads is not None:
                for lib in self._blas:
                    lib.set_num_threads(threads)


_LIMITS = _Limits()


def one_thread() -> Any:
    """Context manager: OpenMP limited to one thread on the calling thread and BLAS to one thread in
    the process while it is open (see the module docstring for the rule and its guarantees).
    Re-entrant; safe to use from several threads at once."""
    return _LIMITS.one_thread()


def set_blas_baseline(threads: int | None) -> None:
    """Set the process's BLAS thread count to ``threads`` now (unless a routing call is running; it is
    then set when the last one ends) and make it the value restored after every routing call. None
    goes back to restoring whatever the count was when routing began."""
    _LIMITS.set_blas_baseline(threads)
