"""The two test tiers: the full suite (CI, ``pytest -q``) and its fast tier (``pytest -q -m "not slow"``).

Rule: a test is ``slow`` when it trains a real router, loads the MiniLM transformer, starts PostgreSQL, MLflow,
a browser or a service process, or takes more than about 3 s on a busy 2-core machine. Such a test is marked
where it is written (``@pytest.mark.slow``, or a module's ``pytestmark``), or through its fixtures: a fixture
declared with :func:`slow_fixture` makes every test that uses it, directly or through other fixtures, slow
(:func:`mark_slow_fixture_users`, run at collection). So a new test on the session's trained router cannot
land in the fast tier by mistake, and the fast tier never builds one of these fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])

_REASON = "_llmroute_slow_reason"


def slow_fixture(reason: str) -> Callable[[F], F]:
    """Declare a fixture slow, with why; put it under ``@pytest.fixture``."""

    def declare(fn: F) -> F:
        setattr(fn, _REASON, reason)
        return fn

    return declare


def slow_fixtures_of(item: pytest.Item) -> list[str]:
    """The slow fixtures ``item`` uses (directly or through other fixtures), as "name: reason"."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    found = []
    for name in getattr(item, "fixturenames", ()):
        for definition in info.name2fixturedefs.get(name, ()):
            reason = getattr(definition.func, _REASON, None)
            if reason is not None:
                found.append(f"{name}: {reason}")
    return found


def mark_slow_fixture_users(items: Iterable[pytest.Item]) -> None:
    """Mark ``slow`` every item that uses a :func:`slow_fixture` and is not marked already."""
    for item in items:
        if item.get_closest_marker("slow") is None and slow_fixtures_of(item):
            item.add_marker(pytest.mark.slow)
