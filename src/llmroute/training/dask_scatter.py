"""Sending the client's data to every Dask worker under a key of its own.

``Client.scatter`` names data by a hash of its content by default, so scattering an object equal to
one scattered before reuses that key. When the earlier future is dropped at about that time, its
release reaches the scheduler after the new scatter and the key is forgotten: a task submitted on the
new future is cancelled with "lost dependencies" (the scorer's state is scattered twice with the same
content, once to build its features and once to score the cascade's cells; a CI run failed on it).
Every scatter in the training code goes through :func:`broadcast`, which asks for a fresh key."""

from __future__ import annotations

from typing import Any


def broadcast(client: Any, data: Any) -> Any:
    """``data`` (or each item of a list of it) on every worker, as future(s) under fresh keys."""
    return client.scatter(data, broadcast=True, hash=False)
