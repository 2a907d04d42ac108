"""Fixtures of the A/B tests: the serving tests' session router and live servers, and experiment files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serving.conftest import live, router, trained  # noqa: F401  - shared session fixtures

WriteExperiment = Callable[..., Path]


@pytest.fixture
def write_experiment(tmp_path: Path) -> WriteExperiment:
    """Write an experiment YAML (a two-arm default, updated by keyword arguments) and return its path."""

    def _write(name: str = "exp", **fields: Any) -> Path:
        spec: dict[str, Any] = {
            "name": name,
            "unit": "user",
            "arms": [
                {"name": "control", "control": True, "weight": 1, "always": "gpt-4-1106-preview"},
                {"name": "cheap", "weight": 1, "always": "mistralai/mistral-7b-chat"},
            ],
        }
        spec.update(fields)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return _write
