"""OpenMP's wait policy for the processes llmroute starts.

LightGBM (and torch) run their parallel loops on OpenMP threads. By default GNU OpenMP keeps a
finished loop's threads spinning for a while in case more work comes; on a busy machine the spinning
threads compete with
the ones doing work (and with every other process), and a training takes several times the wall and
CPU time it needs for the same model. The policy is read once, when the OpenMP runtime is loaded, so it must be in the environment before lightgbm or torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def openmp_loaded() -> bool:
    """True when an OpenMP runtime (libgomp / libomp / libiomp) is already mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return any(name in maps for name in ("libgomp", "libomp", "libiomp"))


def passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy. Returns whether it takes effect
    in this process (False if an OpenMP runtime was already loaded: then only child processes, such as
    Dask workers or server processes, get it). The CLI calls this first thing in ``main()``."""
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")
    return not openmp_loaded()
