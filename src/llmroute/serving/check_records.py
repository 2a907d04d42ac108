"""Passed isolated checks, remembered by the candidate's content, so that one check serves every worker.

Every worker process of every replica polls the model source on its own, so a promotion reaches all
of them within one poll interval, and each would run the reload transaction's isolated check (a child
process that parses and smoke-routes the candidate, :mod:`llmroute.serving.candidate`) at the same
moment: N children on a machine's few cores. The check's finding depends only on the candidate's files
and on the code that parses them, so a pass is recorded under a :func:`check_key`: the sha256 of every
file of the pinned candidate, with the llmroute, LightGBM, NumPy and Python versions and whether the
answer scorer was checked.

- **One host**: the workers of a replica share the state folder (``LLMROUTE_HOME``). The worker that
  runs the check holds an exclusive lock on ``<home>/checks/<key>.lock`` while it does and then writes
  ``<key>.passed``; the others wait for the lock and find the record (:class:`CheckRecords`).
- **Across hosts**: a replica that passed a registry version's check tags the version
  (:data:`~llmroute.training.registry.CHECKED_TAG` = the key, see
  :mod:`llmroute.serving.candidate`); a replica that finds the tag equal to its own key skips the check.

Only passes are recorded. A failed check is run again by every worker (each must reject the
candidate itself and report why). The guarantee of the transaction is unchanged: a candidate is
swapped in only after a check of exactly its files (same key) passed in an isolated process, and after
it was loaded and smoke-routed in the serving process itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

import llmroute
from llmroute.artifacts.manifest import file_sha256

CHECKS_DIR = "checks"


def check_key(folder: Path, with_scorer: bool) -> str:
    """The key a check of ``folder`` is recorded under: sha256 over every file's relative path and
    sha256, the versions of the code that parses them (llmroute, LightGBM, NumPy, Python) and
    ``with_scorer``. Two folders get the same key only when every file is byte-identical."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    h.update(f"llmroute {llmroute.__version__}; lightgbm {version('lightgbm')}; numpy {np.__version__}; "
             f"python {platform.python_version()}; scorer {bool(with_scorer)}".encode())
    return h.hexdigest()


class CheckLockTimeout(TimeoutError):
    """Another worker held the check's lock for longer than allowed."""


class CheckRecords:
    """Passed checks under ``folder`` (``<home>/checks``), shared by the processes of one host."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / f"{key}{suffix}"

    def passed(self, key: str) -> bool:
        """True when a check with ``key`` passed on this host."""
        return self._path(key, ".passed").is_file()

    def record_pass(self, key: str, detail: dict[str, object]) -> None:
        """Record that the check with ``key`` passed (written atomically: a reader sees all or nothing)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key, f".passed.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**detail, "pid": os.getpid(),
                                   "at": datetime.now(UTC).isoformat(timespec="seconds")}))
        os.replace(tmp, self._path(key, ".passed"))

    @contextmanager
    def exclusive(self, key: str, timeout_s: float) -> Iterator[None]:
        """Hold the lock for ``key`` (blocking, at most ``timeout_s``: then :class:`CheckLockTimeout`).
        The lock is an ``flock``: it is released when its holder exits, even by a crash."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(key, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CheckLockTimeout(
                            f"another process held the isolated check's lock {self._path(key, '.lock')} for "
                            f"more than {timeout_s:g} s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
