from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def rb_dir() -> Path:
    return FIXTURES / "routerbench"


@pytest.fixture
def rb_files(rb_dir: Path) -> list[Path]:
    return [rb_dir / "arc_challenge_train.csv", rb_dir / "mbpp_train.csv", rb_dir / "winograde_train.csv"]


@pytest.fixture
def lr_dir() -> Path:
    return FIXTURES / "llmrouter"
