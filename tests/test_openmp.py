"""The CLI turns OpenMP spin-waiting off before LightGBM loads its OpenMP runtime."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llmroute.openmp import WAIT_POLICY_ENV, passive_openmp


def test_passive_is_set_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WAIT_POLICY_ENV, raising=False)
    passive_openmp()
    assert os.environ[WAIT_POLICY_ENV] == "PASSIVE"
    monkeypatch.setenv(WAIT_POLICY_ENV, "ACTIVE")
    passive_openmp()
    assert os.environ[WAIT_POLICY_ENV] == "ACTIVE"


def test_cli_sets_it_before_lightgbm_loads() -> None:
    code = (
        "import os, sys\n"
        "from llmroute.openmp import openmp_loaded, passive_openmp\n"
        "import llmroute.cli\n"
        "assert not openmp_loaded(), 'importing the CLI loaded an OpenMP runtime'\n"
        "assert passive_openmp() is True\n"
        "import lightgbm\n"
        "assert openmp_loaded()\n"
        "assert passive_openmp() is False\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PASSIVE"
