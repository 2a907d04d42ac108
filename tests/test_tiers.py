"""The fast tier (``-m "not slow"``) leaves out every test that uses a slow fixture, however indirectly,
and never builds such a fixture; a parameter that merely shares a slow fixture's name is not slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFTEST = '''
import pytest

from tests.tiers import mark_slow_fixture_users, slow_fixture


def pytest_collection_modifyitems(config, items):
    mark_slow_fixture_users(items)


@pytest.fixture(scope="session")
@slow_fixture("pretends to train")
def trained(tmp_path_factory):
    (tmp_path_factory.getbasetemp() / "BUILT").write_text("the slow fixture ran")
    return 1


@pytest.fixture
def router(trained):
    return trained + 1
'''

TESTS = '''
import pytest


def test_uses_it_directly(trained):
    assert trained == 1


def test_uses_it_through_another_fixture(router):
    assert router == 2


@pytest.mark.parametrize("trained", [5])
def test_a_parameter_of_the_same_name(trained):
    assert trained == 5


def test_plain():
    pass
'''


def _run(tmp_path: Path, *args: str) -> tuple[str, Path]:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_sample.py").write_text(TESTS)
    base = tmp_path / f"base{len(list(tmp_path.glob('base*')))}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", f"--basetemp={base}",
         "-o", "markers=slow: slow", *args, str(suite)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, base


def test_fast_tier_leaves_out_slow_fixture_users_and_never_builds_them(tmp_path: Path) -> None:
    out, base = _run(tmp_path, "-m", "not slow")
    assert "2 passed, 2 deselected" in out, out
    assert "PASSED suite/test_sample.py::test_plain" in out
    assert "PASSED suite/test_sample.py::test_a_parameter_of_the_same_name[5]" in out
    assert not (base / "BUILT").exists()


def test_slow_tier_is_exactly_the_slow_fixture_users(tmp_path: Path) -> None:
    out, base = _run(tmp_path, "-m", "slow")
    assert "2 passed, 2 deselected" in out, out
    assert "test_uses_it_directly" in out and "test_uses_it_through_another_fixture" in out
    assert (base / "BUILT").read_text() == "the slow fixture ran"

