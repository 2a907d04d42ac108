from __future__ import annotations

import pytest

from tests.router.helpers import Trained, trained_router
from tests.tiers import slow_fixture


@pytest.fixture(scope="session")
@slow_fixture("trains a router with the MiniLM transformer")
def small(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The session's small trained router (shared with tests/router: trained once)."""
    return trained_router(tmp_path_factory.mktemp("small-router"))
