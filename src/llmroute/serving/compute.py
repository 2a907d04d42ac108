"""OpenMP and BLAS thread limits for routing in the server's worker threads.

The router runs torch (embedding) and LightGBM (quality model), both OpenMP, and NumPy matrix products
(neighbour search), OpenBLAS. With every request thread owning a full-size OpenMP team, idle teams spin
against the working one: on a 2-core machine a sequential ``/route`` took ~10x longer than with one
OpenMP thread per request thread. OpenBLAS does the same with its own threads: limiting OpenMP alone
left ``route()`` at ~8 ms in-process against ~2 ms with one BLAS thread, and the server at ~12 ms of
CPU per request. The service gets its parallelism from concurrent requests, so each worker thread
limits its own OpenMP teams (the limit is per calling thread in OpenMP, hence once per thread) and
OpenBLAS is limited for the whole process (its limit is global).
"""

from __future__ import annotations

import threading
from typing import Any


class ComputeLimiter:
    """``apply()`` at the start of CPU work: limits the calling thread's OpenMP threads and the process's
    BLAS threads (once per thread)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._local = threading.local()
        self._controller: Any = None
        self._lock = threading.Lock()

    def apply(self) -> None:
        if self.threads is None or getattr(self._local, "done", False):
            return
        with self._lock:
            if self._controller is None:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
        self._controller.limit(limits=self.threads, user_api="openmp")
        self._controller.limit(limits=self.threads, user_api="blas")
        self._local.done = True
