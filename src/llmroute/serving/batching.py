"""Micro-batching of routing: concurrent requests for one router share one embed and one LightGBM predict.

Routing a prompt costs a fixed overhead per call (tokenizer and torch set-up, ``Booster.predict``) on
top of a small cost per prompt, so under load it is cheaper to route the requests that arrived
together in one :meth:`~llmroute.router.router.Router.route_many` call. :class:`RouteBatcher` does it
without a timer: the first compute thread to arrive routes its own request at once (an idle service
adds no latency); requests that arrive while it works wait, and the next of them routes all the waiting
ones (up to ``max_batch``) in one call when the previous batch is done. The batch size thus follows
the load. Prompts longer than :data:`BIG_PROMPT_CHARS` are taken out of the batch and routed alone
after the others have their answers, so a big prompt never slows the requests batched with it.

A batch's decisions are those each request gets alone (``route_many`` keeps rows independent). A
request the router refuses (no eligible model, unknown rule) gets its own error; if ``route_many``
fails as a whole, each request of the batch is routed alone, so one bad request cannot fail the others.

Batchers are kept per :class:`~llmroute.router.router.Router` object (:class:`Batchers`): requests
routed by different routers (a reload, an A/B arm) are never mixed in one batch.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from llmroute.router.decision import Decision, RouteQuery
from llmroute.router.router import Router

BIG_PROMPT_CHARS = 8_000
"""A prompt longer than this (about 2,000 tokens) is routed alone, after the rest of its batch has been
answered, so that its long preparation (token count, text features, embedding) delays no other request."""


class _Slot:
    """One waiting request: its query, then its outcome (or the turn to route a batch)."""

    __slots__ = ("query", "outcome", "lead", "ready")

    def __init__(self, query: RouteQuery) -> None:
        self.query = query
        self.outcome: Decision | BaseException | None = None
        self.lead = False
        self.ready = threading.Event()


class RouteBatcher:
    """Routes one router's concurrent requests in batches of at most ``max_batch`` (see module docstring).

    Every call must pass the same router (:class:`Batchers` keeps one batcher per router); the batcher
    holds no reference to it, so a router that is no longer served can be freed with its batcher."""

    def __init__(self, max_batch: int = 32, big_prompt_chars: int = BIG_PROMPT_CHARS) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self.big_prompt_chars = big_prompt_chars
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._leading = False
        self.batches = 0  # batches routed, and requests in them (for tests and tuning)
        self.routed = 0

    def route(self, router: Router, query: RouteQuery) -> Decision:
        """The decision for ``query`` (carrying the embedding row it was made with, ``Decision.embedding``).
        Blocks the calling thread; raises what routing it alone would raise."""
        slot = _Slot(query)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.ready.wait()
            lead = slot.lead  # woken either with an outcome or with the turn to route the waiting ones
        if lead:
            self._lead(router, slot)
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        assert slot.outcome is not None
        return slot.outcome

    def _lead(self, router: Router, own: _Slot) -> None:
        with self._lock:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
        # big prompts never delay others: the small ones are routed together first; the leader's own big
        # prompt then alone; other big ones go back to the head of the queue, each for its own thread
        small = [s for s in batch if len(s.query.prompt) <= self.big_prompt_chars]
        groups = [small] if small else []
        deferred = [s for s in batch if len(s.query.prompt) > self.big_prompt_chars and s is not own]
        if own in batch and own not in small:
            groups.append([own])
        routed = [s for g in groups for s in g]
        try:
            for group in groups:
                try:
                    self._route(router, group)
                finally:
                    for slot in group:
                        if slot.outcome is None:
                            slot.outcome = RuntimeError("the batch of this request failed before it was routed")
                        slot.ready.set()
        finally:
            for slot in routed:
                if slot.outcome is None:
                    slot.outcome = RuntimeError("the batch of this request failed before it was routed")
            with self._lock:
                self._waiting[:0] = deferred
                self.batches += len(groups)
                self.routed += len(routed)
                successor = self._waiting[0] if self._waiting else None
                self._leading = successor is not None
            for slot in routed:
                slot.ready.set()
            if successor is not None:
                successor.lead = True
                successor.ready.set()

    @staticmethod
    def _route(router: Router, batch: Sequence[_Slot]) -> None:
        if len(batch) > 1:
            try:
                outcomes: list[Decision | BaseException] = list(router.route_many([s.query for s in batch]))
                for slot, outcome in zip(batch, outcomes, strict=True):
                    slot.outcome = outcome
                return
            except Exception:  # noqa: BLE001 - route each alone below, so the failure lands on its request
                pass
        for slot in batch:
            try:
                slot.outcome = router.route_query(slot.query)
            except BaseException as exc:  # noqa: BLE001 - handed to the request's own thread, re-raised there
                slot.outcome = exc


class Batchers:
    """One :class:`RouteBatcher` per router object (weakly held: a swapped-out router's batcher goes with it)."""

    def __init__(self, max_batch: int = 32) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._by_router: weakref.WeakKeyDictionary[Router, RouteBatcher] = weakref.WeakKeyDictionary()

    def for_router(self, router: Router) -> RouteBatcher:
        with self._lock:
            batcher = self._by_router.get(router)
            if batcher is None:
                batcher = self._by_router[router] = RouteBatcher(self.max_batch)
            return batcher

    def route(self, router: Router, query: RouteQuery) -> Decision:
        """:meth:`RouteBatcher.route` with ``router``'s batcher; with ``max_batch`` 1, routes directly."""
        if self.max_batch == 1:
            return router.route_query(query)
        return self.for_router(router).route(router, query)
