"""Data sent to the Dask workers gets a fresh key each time (see :mod:`llmroute.training.dask_scatter`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from llmroute.training.dask_scatter import broadcast

SRC = Path(__file__).resolve().parents[2] / "src" / "llmroute"


def test_no_scatter_outside_broadcast() -> None:
    """A content-hashed scatter can lose its key to an earlier equal one being released; the training
    code scatters only through :func:`broadcast`."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py") if path.name != "dask_scatter.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bscatter\(", line) and not re.search(r"\bax\.scatter\(", line)
    ]
    assert not found, f"scatter outside dask_scatter.broadcast: {found}"


def _size(x: object) -> int:
    return len(x)  # type: ignore[arg-type]


@pytest.mark.slow
def test_equal_data_scattered_again_after_a_release_stays_usable() -> None:
    """The sequence that cancelled a CI run ("lost dependencies"): scatter, use, drop, scatter equal
    data again, use it at once. With fresh keys, every task finds its data."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        keys = set()
        for _ in range(150):
            first = broadcast(client, np.arange(3))
            assert client.submit(_size, first, pure=False).result(timeout=30) == 3
            keys.add(first.key)
            del first
            again = broadcast(client, np.arange(3))
            assert client.submit(_size, again, pure=False).result(timeout=30) == 3
            keys.add(again.key)
            del again
        assert len(keys) == 300  # every scatter its own key
