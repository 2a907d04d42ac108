"""The router limits OpenMP and BLAS to one thread for small routing calls from the main thread by
itself, restores them afterwards, leaves worker threads and big batches alone."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from llmroute.router.decision import RouteQuery
from llmroute.router.router import Router
from llmroute.router.threads import SMALL_BATCH, set_blas_baseline

PROMPT = "Write a python function that reverses a list and explain its complexity."


def _threads(api: str) -> set[int]:
    return {int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == api}


class Recording:
    """Wraps an embedder; records the BLAS and OpenMP thread counts seen while encoding, and can make
    ``encode`` wait at a barrier (to overlap calls from several threads)."""

    def __init__(self, inner: object, barrier: threading.Barrier | None = None) -> None:
        self.inner = inner
        self.spec, self.fingerprint, self.dim = inner.spec, inner.fingerprint, inner.dim  # type: ignore[attr-defined]
        self.independent_rows = bool(getattr(inner, "independent_rows", False))
        self.barrier = barrier
        self.seen: list[tuple[set[int], set[int]]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.append((_threads("blas"), _threads("openmp")))
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        return self.inner.encode(texts)  # type: ignore[attr-defined]


@pytest.fixture
def blas_two() -> object:
    """BLAS as the process has it (more than one thread, as by default on a multi-core machine) and two
    OpenMP threads on this thread; yields the BLAS count to expect back after routing."""
    before = _threads("blas")
    if not before or before == {1}:
        pytest.skip("BLAS runs on one thread here already (or threadpoolctl finds no BLAS)")
    with threadpool_limits(limits=2, user_api="openmp"):
        yield before


def test_small_call_runs_on_one_thread_and_restores(router: Router, blas_two: set[int]) -> None:
    rec = Recording(router.embedder)
    router = dataclasses.replace(router, embedder=rec)  # type: ignore[arg-type]
    router.route(PROMPT)
    assert rec.seen == [({1}, {1})]
    assert _threads("blas") == blas_two and _threads("openmp") == {2}


def test_big_batch_keeps_every_thread(router: Router, blas_two: set[int]) -> None:
    rec = Recording(router.embedder)
    router = dataclasses.replace(router, embedder=rec)  # type: ignore[arg-type]
    out = router.route_many([RouteQuery(PROMPT)] * (SMALL_BATCH + 1))
    assert len(out) == SMALL_BATCH + 1
    assert rec.seen and all(blas == blas_two for blas, _ in rec.seen)


def test_overlapping_calls_from_worker_threads_leave_the_process_setting_alone(
    router: Router, blas_two: set[int]
) -> None:
    # worker threads are limited by whoever runs them (the service's ComputeLimiter), not by the router;
    # OpenBLAS reports its count reliably only to the main thread, so only the main thread checks it
    rec = Recording(router.embedder, threading.Barrier(2))
    router = dataclasses.replace(router, embedder=rec)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            router.route(PROMPT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(rec.seen) == 2  # both were inside at once (the barrier)
    assert _threads("blas") == blas_two


def test_a_pinned_baseline_is_left_as_it_is(router: Router, blas_two: set[int]) -> None:
    try:
        set_blas_baseline(1)
        assert _threads("blas") == {1}
        router.route(PROMPT)
        assert _threads("blas") == {1}
    finally:
        set_blas_baseline(max(blas_two))  # sets it now ...
        set_blas_baseline(None)  # ... and routing goes back to restoring the process's own count
    router.route(PROMPT)
    assert _threads("blas") == blas_two
