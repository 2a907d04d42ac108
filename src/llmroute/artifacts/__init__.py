"""Saved routers as artifacts: where they are kept and the one way to load them.

Below both ``serving`` and ``training`` (neither imports the other): :mod:`.loading` loads a router
from a folder, ``LATEST`` or a registry URI with its checksums verified; :mod:`.manifest` writes and
verifies the checksums; :mod:`.registry` reads the MLflow model registry; :mod:`.store` says where the
MLflow store is. This package may use mlflow (imported inside the functions that need it) but never
fastapi, and nothing in it imports ``serving``, ``training`` or the CLI.
"""
