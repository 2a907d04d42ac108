"""One isolated check per candidate content: the workers of a host share a passed check (keyed by the
candidate's files), run it once even when they reload at the same moment, and never share a failure
or a pass of different files."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import pytest

from llmroute.config import Settings
from llmroute.serving.candidate import CandidateRejected, CheckOutcome, check_candidate, prepare_candidate
from llmroute.serving.check_records import CheckLockTimeout, CheckRecords, check_key
from tests.serving.conftest import Trained
from tests.serving.corruptions import CORRUPTIONS, damaged_copy


def _check(folder: Path, core: Settings) -> CheckOutcome:
    candidate = prepare_candidate(str(folder), core)
    try:
        return asyncio.run(check_candidate(candidate, core, False, 120.0))
    finally:
        candidate.discard()


def test_key_follows_every_byte_and_the_scorer_flag(good: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(good, copy)
    assert check_key(good, False) == check_key(copy, False) != check_key(good, True)
    (copy / "router.json").write_text((copy / "router.json").read_text() + " ")
    assert check_key(copy, False) != check_key(good, False)


def test_workers_of_a_host_check_a_candidate_once(good: Path, trained: Trained, tmp_path: Path) -> None:
    core = Settings(home=tmp_path / "home")
    first = _check(good, core)
    assert first.how == "ran"
    assert _check(good, core).how == "host"  # another worker, same home, same files: no second child
    assert CheckRecords(core.home / "checks").passed(first.key)
    other = Settings(home=tmp_path / "other-host")
    assert _check(good, other).how == "ran"  # another host (its own home) checks for itself


def test_simultaneous_reloads_run_one_check(good: Path, tmp_path: Path) -> None:
    core = Settings(home=tmp_path / "home")
    candidates = [prepare_candidate(str(good), core) for _ in range(3)]

    async def all_at_once() -> list[CheckOutcome]:
        return list(await asyncio.gather(*(check_candidate(c, core, False, 120.0) for c in candidates)))

    try:
        outcomes = asyncio.run(all_at_once())
    finally:
        for c in candidates:
            c.discard()
    assert sorted(o.how for o in outcomes) == ["host", "host", "ran"]
    assert len({o.key for o in outcomes}) == 1


def test_a_failed_check_is_not_recorded(good: Path, tmp_path: Path) -> None:
    core = Settings(home=tmp_path / "home")
    [torn] = [k for k in CORRUPTIONS if k.name == "lightgbm_torn_middle"]
    damaged = tmp_path / "damaged"
    damaged_copy(good, torn, damaged)
    for _ in range(2):  # every worker finds the crash itself
        with pytest.raises(CandidateRejected, match=r"crashed \(SIGABRT\)"):
            _check(damaged, core)
    assert not list((core.home / "checks").glob("*.passed"))
    assert _check(good, core).how == "ran"


def test_lock_waits_for_its_holder_and_times_out(tmp_path: Path) -> None:
    records = CheckRecords(tmp_path / "checks")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with records.exclusive("k", 5):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    t0 = time.monotonic()
    with pytest.raises(CheckLockTimeout, match="held the isolated check's lock"), records.exclusive("k", 0.3):
        pass
    assert time.monotonic() - t0 >= 0.3
    release.set()
    t.join()
    with records.exclusive("k", 1):  # released: taken at once
        records.record_pass("k", {"version": "v"})
    assert records.passed("k") and not records.passed("other")
