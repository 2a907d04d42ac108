"""Micro-batching of routing: batched decisions equal unbatched ones, failures stay with their request,
batches respect their size limit, and no request is left waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from llmroute.router.decision import Constraints, Decision, NoEligibleModelError, QualityTarget, RouteQuery
from llmroute.router.router import Prepared, Router
from llmroute.serving.batching import Batchers, RouteBatcher
from llmroute.serving.compute import ComputeLimiter
from tests.serving.conftest import Trained


def _queries(trained: Trained, router: Router) -> list[RouteQuery]:
    """Varied prompts and requests, including ones the router refuses."""
    prompts = trained.logs["prompt"].drop_duplicates().tolist()
    cheapest = router.models[int(np.argmin(router.cost_model.predict(np.array([100.0]))[0]))]
    task = router.quality.tasks_[0] if router.quality.tasks_ else "qa"
    asks: list[dict[str, Any]] = [
        {},
        {"target": QualityTarget(0.8)},
        {"target": QualityTarget(0.6, "absolute"), "rule": "threshold"},
        {"confidence": 0.7},
        {"confidence": 0.2, "task": task},
        {"constraints": Constraints(excluded_models=(cheapest,))},
        {"constraints": Constraints(allowed_models=router.models[:3]), "rule": "utility"},
        {"constraints": Constraints(max_cost_usd=0.0)},  # nothing is free: NoEligibleModelError
        {"rule": "no-such-rule"},  # ValueError
        {"confidence": 1.5},  # ValueError
        {"task": task, "target": QualityTarget(1.0)},
        {"constraints": Constraints(max_output_tokens=500)},
    ]
    return [RouteQuery(prompts[i % len(prompts)], **asks[i % len(asks)]) for i in range(24)] + [
        RouteQuery("x"), RouteQuery("What is 2 + 2?\n\nA) 3\nB) 4\nC) 5\nD) 22\nAnswer:"),
    ]


def _alone(router: Router, q: RouteQuery) -> Decision | ValueError:
    try:
        return router.route(q.prompt, q.constraints, q.target, q.confidence, q.task, q.rule)
    except ValueError as exc:
        return exc


def _same(a: Decision | BaseException, b: Decision | BaseException) -> bool:
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return type(a) is type(b) and str(a) == str(b)
    return a == b


def test_route_many_gives_each_query_its_unbatched_decision(trained: Trained, router: Router) -> None:
    queries = _queries(trained, router)
    alone = [_alone(router, q) for q in queries]
    assert any(isinstance(a, NoEligibleModelError) for a in alone)
    assert sum(isinstance(a, Decision) for a in alone) >= 15
    assert len({a.model for a in alone if isinstance(a, Decision)}) > 1
    for size in (2, 5, len(queries)):
        for start in range(0, len(queries), size):
            batch = router.route_many(queries[start : start + size])
            for got, want in zip(batch, alone[start : start + size], strict=True):
                assert _same(got, want), (got, want)


def test_embed_rows_equal_each_prompt_embedded_alone(trained: Trained, router: Router) -> None:
    prompts = trained.logs["prompt"].drop_duplicates().tolist()[:6] + ["x"]
    batch = router.embed(prompts)
    assert np.array_equal(batch, np.vstack([router.embed([p]) for p in prompts]))


def _concurrently(fn: Callable[[int], Any], n: int, timeout: float = 60) -> list[Any]:
    """Call fn(0..n-1) in n threads started together, each with one OpenMP thread as the service's
    compute threads have (the transformer's last bits depend on it); each result or exception, in order."""
    out: list[Any] = [None] * n
    start = threading.Barrier(n)
    limiter = ComputeLimiter(1)

    def run(i: int) -> None:
        limiter.apply()
        start.wait()
        try:
            out[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - compared by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a request was left waiting"
    return out


class _Recording(Router):
    """The trained router, recording the size of every route_many batch (``route`` is a batch of one)
    and optionally held at a gate."""

    sizes: list[int]
    gate: threading.Event | None
    entered: threading.Event

    def __init__(self, router: Router, gate: threading.Event | None = None) -> None:  # a frozen Router: fill __dict__ directly
        self.__dict__.update(router.__dict__, sizes=[], gate=gate, entered=threading.Event())

    def route_many(self, queries: Sequence[RouteQuery], prepared: Prepared | None = None) -> list[Decision | ValueError]:
        self.sizes.append(len(queries))
        self._hold()
        return super().route_many(queries, prepared)

    def _hold(self) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)


def test_batcher_under_concurrency_returns_unbatched_decisions_and_embeddings(trained: Trained, router: Router) -> None:
    rec = _Recording(router)
    queries = _queries(trained, rec)
    with threadpool_limits(limits=1, user_api="openmp"):
        alone = [_alone(rec, q) for q in queries]
        embedded_alone = [rec.embed([q.prompt]) for q in queries]
    rec.sizes.clear()
    batcher = RouteBatcher(max_batch=8)
    got = _concurrently(lambda i: batcher.route(rec, queries[i]), len(queries))
    for i, (g, want) in enumerate(zip(got, alone, strict=True)):
        if isinstance(want, ValueError):
            assert _same(g, want), (g, want)
        else:
            assert _same(g, want)
            assert np.array_equal(g.embedding, embedded_alone[i][0])  # the row it was routed with, returned with it
            assert not g.embedding.flags.writeable
    assert sum(rec.sizes) == len(queries) and max(rec.sizes) <= 8
    assert batcher.routed == len(queries) and batcher.batches == len(rec.sizes)


def test_batch_size_limit_and_everyone_is_served(trained: Trained, router: Router) -> None:
    gate = threading.Event()
    rec = _Recording(router, gate)
    prompts = trained.logs["prompt"].drop_duplicates().tolist()[:11]
    batcher = RouteBatcher(max_batch=3)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(batcher.route(rec, RouteQuery(prompts[0]))))
    first.start()
    assert rec.entered.wait(30)  # the first request routes alone and is held; the others queue behind it
    rest = threading.Thread(target=lambda: results.extend(
        _concurrently(lambda i: batcher.route(rec, RouteQuery(prompts[i + 1])), 10)
    ))
    rest.start()
    deadline = threading.Event()
    while len(batcher._waiting) < 10 and not deadline.wait(0.01):
        pass
    gate.set()
    first.join(60)
    rest.join(60)
    assert len(results) == 11 and all(isinstance(r, Decision) for r in results)
    assert rec.sizes == [1, 3, 3, 3, 1]


def test_a_failing_request_does_not_fail_its_batch(trained: Trained, router: Router) -> None:
    class Picky(_Recording):
        def route_query(self, query: RouteQuery) -> Decision:
            if query.prompt == "boom":
                raise RuntimeError("cannot route this one")
            return super().route_query(query)

        def route_many(self, queries: Sequence[RouteQuery], prepared: Prepared | None = None) -> list[Decision | ValueError]:
            if any(q.prompt == "boom" for q in queries):
                self.sizes.append(len(queries))
                raise RuntimeError("cannot route this batch")
            return super().route_many(queries, prepared)

    gate = threading.Event()
    picky = Picky(router, gate)
    prompts = trained.logs["prompt"].drop_duplicates().tolist()[:5]
    queries = [RouteQuery(prompts[0]), RouteQuery("boom"), RouteQuery(prompts[1], Constraints(max_cost_usd=0.0)),
               *(RouteQuery(p) for p in prompts[2:])]
    batcher = RouteBatcher(max_batch=32)
    holder = threading.Thread(target=batcher.route, args=(picky, RouteQuery(prompts[0])))
    holder.start()
    assert picky.entered.wait(30)  # hold the first batch so that all the queries below form one batch
    got: list[Any] = []
    waiters = threading.Thread(target=lambda: got.extend(
        _concurrently(lambda i: batcher.route(picky, queries[i]), len(queries))
    ))
    waiters.start()
    while len(batcher._waiting) < len(queries):
        threading.Event().wait(0.01)
    gate.set()
    holder.join(60)
    waiters.join(60)
    assert isinstance(got[1], RuntimeError) and "cannot route this one" in str(got[1])
    assert isinstance(got[2], NoEligibleModelError)
    for i in (0, 3, 4, 5):
        assert _same(got[i], _alone(router, queries[i]))
    assert picky.sizes[1] == len(queries)  # tried as one batch, then each alone


def test_no_request_waits_when_the_service_is_idle(trained: Trained, router: Router) -> None:
    rec = _Recording(router)
    batcher = RouteBatcher(max_batch=32)
    prompts = trained.logs["prompt"].drop_duplicates().tolist()[:5]
    for p in prompts:  # one at a time: each is routed at once, alone, by its own thread
        decision = batcher.route(rec, RouteQuery(p))
        assert isinstance(decision, Decision)
    assert rec.sizes == [1] * len(prompts)
    assert not batcher._leading and not batcher._waiting


def test_batchers_are_per_router_and_batch_size_one_routes_directly(router: Router) -> None:
    other = Router.__new__(Router)
    other.__dict__.update(router.__dict__)
    batchers = Batchers(max_batch=4)
    assert batchers.for_router(router) is batchers.for_router(router)
    assert batchers.for_router(router) is not batchers.for_router(other)
    direct = Batchers(max_batch=1)
    decision = direct.route(router, RouteQuery("x"))
    assert decision == router.route("x")
    assert not direct._by_router
    with pytest.raises(ValueError, match="at least 1"):
        RouteBatcher(max_batch=0)


@pytest.mark.parametrize("big_first", [True, False])
def test_a_big_prompt_is_routed_alone_after_the_others(trained: Trained, router: Router, big_first: bool) -> None:
    gate = threading.Event()
    rec = _Recording(router, gate)
    prompts = trained.logs["prompt"].drop_duplicates().tolist()[:4]
    big = RouteQuery(prompts[3] + "\n" + "word " * 2000)  # > 8,000 characters
    small = [RouteQuery(p) for p in prompts[1:3]]
    queries = [big, *small] if big_first else [small[0], big, small[1]]
    batcher = RouteBatcher(max_batch=32, big_prompt_chars=8_000)
    holder = threading.Thread(target=batcher.route, args=(rec, RouteQuery(prompts[0])))
    holder.start()
    assert rec.entered.wait(30)  # the first request is held; the three below queue behind it, in order
    got: dict[int, Any] = {}
    threads = []
    for i, q in enumerate(queries):
        t = threading.Thread(target=lambda i=i, q=q: got.__setitem__(i, batcher.route(rec, q)))
        t.start()
        threads.append(t)
        while len(batcher._waiting) < i + 1:
            threading.Event().wait(0.01)
    gate.set()
    for t in [holder, *threads]:
        t.join(60)
    # the two small prompts in one batch first, then the big one alone (by its own thread when deferred)
    assert rec.sizes == [1, 2, 1]
    for i, q in enumerate(queries):
        assert _same(got[i], _alone(router, q))
