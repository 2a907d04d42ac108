"""Reload as a transaction: a candidate router is checked where it cannot hurt before it is swapped in.

:func:`prepare_candidate` (blocking) and :func:`check_candidate` (async) do, in order:

1. **Pin** the source into a private snapshot folder: a folder is copied (what is checked is exactly
   what is loaded, even while someone is still copying files into the folder); a registry URI is
   resolved to the version it points at now (``models:/name/7``) and that version's artifact
   downloaded, once per reload.
2. **Checksums**: the snapshot's ``manifest.json`` (written by ``llmroute train`` and at registration)
   is verified; a missing, truncated or altered file is named. Every LightGBM model file must end
   with LightGBM's closing sections (a truncated copy without a manifest).
3. **Isolation**: a child process (forked from a check server that has the code imported already,
   :func:`start_check_server`) loads the snapshot with a
   :class:`~llmroute.router.smoke.StandInEmbedder` (every file parsed by the native code that parses
   it in the server; the embedding model, which is not part of the candidate, is not loaded) and
   smoke-routes it (:func:`llmroute.router.smoke.smoke_route`: every model, both rules, a cost cap;
   the response scorer scores an answer). A native crash there (LightGBM aborts the process on a
   truncated model file) kills only the child; its exit signal and the end of its stderr are the
   reason reported. A pass is recorded under the snapshot's content key
   (:mod:`llmroute.serving.check_records`): the other workers of the host, and replicas that see the
   registry version's tag, reuse it instead of running the same check again.

The server then loads the snapshot itself and smoke-routes it again in-process
(:mod:`llmroute.serving.reloading`); only then is it swapped in. Any failure keeps the old router.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmroute.artifacts.loading import REGISTRY_PREFIX, RouterLoadError, load_served, resolve_folder
from llmroute.artifacts.manifest import verify_manifest
from llmroute.config import Settings
from llmroute.router.smoke import RouterSmokeError, StandInEmbedder, smoke_route

log = logging.getLogger("llmroute.serving")


@dataclass(frozen=True)
class Candidate:
    """A pinned candidate: ``source``, the snapshot folder to check and load; ``snapshot``, the temporary
    folder to delete once loaded; ``registry_version`` for a registry candidate."""

    source: str
    label: str
    snapshot: Path | None = None
    registry_version: str | None = None  # "<name>/<version>" of a registry candidate: the loaded router's version

    def discard(self) -> None:
        if self.snapshot is not None:
            shutil.rmtree(self.snapshot, ignore_errors=True)


class CandidateRejected(RuntimeError):
    """The candidate failed a check; the message says which and why."""


def prepare_candidate(model: str, core: Settings, pinned_version: str | None = None) -> Candidate:
    """Pin ``model`` into a snapshot folder and verify its checksums (see the module docstring); a
    registry ``model`` is pinned to ``pinned_version`` (``<name>/<version>``) when given. Blocking."""
    core.home.mkdir(parents=True, exist_ok=True)
    snapshot = Path(tempfile.mkdtemp(prefix="reload-", dir=core.home))
    try:
        if model.startswith(REGISTRY_PREFIX):
            from llmroute.artifacts.loading import download_version  # lazy: pulls in mlflow

            uri = model if pinned_version is None else f"{REGISTRY_PREFIX}{pinned_version}"
            got = download_version(uri, core, snapshot)
            label = f"{model} (version {got.version})"
            verify_manifest(got.folder, label)
            verify_lightgbm_files(got.folder, label)
            return Candidate(str(got.folder), label, snapshot, got.version)
        folder = resolve_folder(model, core)  # LATEST: the router the last `llmroute train` saved, now
        if not (folder / "router.json").is_file():
            raise RouterLoadError(f"{folder} is not a saved router folder (no router.json)")
        shutil.copytree(folder, snapshot / "router", symlinks=False)
        verify_manifest(snapshot / "router", str(folder))
        verify_lightgbm_files(snapshot / "router", str(folder))
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return Candidate(str(snapshot / "router"), str(folder), snapshot)


def verify_lightgbm_files(folder: Path, label: str) -> None:
    """Raise :class:`CandidateRejected` when a LightGBM text model in ``folder`` (or its ``scorer/``) is
    not whole: LightGBM writes its parameters and ``pandas_categorical`` last, and may load a file cut
    after its trees without complaint (a copy still in progress, without a manifest to catch it)."""
    for path in sorted(folder.rglob("*lightgbm*.txt")):
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            tail = fh.read()
        if b"\nend of parameters\n" not in tail or b"\npandas_categorical:" not in tail or not tail.endswith(b"\n"):
            raise CandidateRejected(f"{label}: {path.relative_to(folder)} is not a whole LightGBM model file "
                                    "(it does not end with LightGBM's closing sections: truncated?)")


def smoke_served(router: Any, scorer: Any) -> int:
    """:func:`smoke_route` the router, and have the scorer (if any) score an answer in [0, 1]."""
    checked = smoke_route(router)
    if scorer is not None:
        try:
            p = float(scorer.score(["What is 2 + 2?"], ["4"], [router.models[0]])[0])
        except Exception as exc:
            raise RouterSmokeError(f"the response scorer cannot score an answer: {type(exc).__name__}: {exc}") from exc
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise RouterSmokeError(f"the response scorer gave {p!r} (not a probability)")
    return checked


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


CHECK_MODULES = ["llmroute.serving.candidate", "llmroute.router.router", "llmroute.router.answer_scorer"]


def _context() -> Any:
    """The ``forkserver`` multiprocessing context the checks run in, its server preloading
    :data:`CHECK_MODULES`: a check is a fork of an already-initialised process (a fraction of a
    second of CPU) instead of a new interpreter importing NumPy, LightGBM and llmroute (about 1.6 s of
    CPU, which N workers at once on a busy machine turn into tens of seconds)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(CHECK_MODULES)
    return ctx


_SERVER_STARTED = threading.Event()


def start_check_server() -> None:
    """Start this process's check server now (blocking, a second or two of CPU once), so that the
    first reload does not pay for it. Idempotent."""
    ctx = _context()
    try:
        # the server imports CHECK_MODULES before it forks anything: one empty child waits for that
        probe = ctx.Process(target=_nothing, daemon=True)
        probe.start()
        probe.join()
    except Exception as exc:  # noqa: BLE001 - a check then starts it (and reports what fails)
        log.warning("the reload check server did not start (%s): the first reload check will try again", exc)
        return
    _SERVER_STARTED.set()


def _nothing() -> None:
    """The probe child of :func:`start_check_server`."""


def check_server_started() -> bool:
    """True once :func:`start_check_server` returned in this process."""
    return _SERVER_STARTED.is_set()


async def check_in_child(candidate: Candidate, core: Settings, use_scorer: bool, timeout_s: float) -> str:
    """Load and smoke-route ``candidate`` in a child process (forked from the check server, see
    :func:`start_check_server`); returns its router version, or raises :class:`CandidateRejected`
    with the child's reason (its error, crash signal and the end of its stderr, or a timeout)."""
    from starlette.concurrency import run_in_threadpool

    ctx = _context()
    request = json.dumps({"model": candidate.source, "use_scorer": use_scorer})
    core.home.mkdir(parents=True, exist_ok=True)
    fd, err_name = tempfile.mkstemp(prefix="check-stderr-", dir=core.home)
    os.close(fd)
    err_path = Path(err_name)
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(request, str(err_path), send), daemon=True)
    try:
        await run_in_threadpool(proc.start)
        send.close()  # the child holds the only writing end: a crash reads as end of file
        try:
            await run_in_threadpool(proc.join, timeout_s)
        except BaseException:
            proc.kill()
            raise
        if proc.exitcode is None:
            proc.kill()
            await run_in_threadpool(proc.join)
            raise CandidateRejected(f"{candidate.label}: the isolated check did not finish in {timeout_s:g} s")
        result: dict[str, Any] = {}
        if receive.poll():
            try:
                result = receive.recv()
            except (EOFError, OSError):
                result = {}
        err = err_path.read_bytes() if err_path.exists() else b""
    finally:
        send.close()
        receive.close()
        err_path.unlink(missing_ok=True)
    code = proc.exitcode or 0
    if code == 0 and result.get("ok"):
        return str(result["version"])
    if result.get("error"):
        raise CandidateRejected(f"{candidate.label}: {result['error']}")
    tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])[-600:]
    how = f"crashed ({_signal_name(code)})" if code < 0 else f"exited with status {code}"
    raise CandidateRejected(f"{candidate.label}: loading it {how} in the isolated check process: {tail or 'no output'}")


@dataclass(frozen=True)
class CheckOutcome:
    """How :func:`check_candidate` was satisfied: ``"ran"`` (this process's child passed), ``"host"``
    (another process of this host passed the same key) or ``"registry"`` (the registry version carries
    a pass of the same key); with the seconds spent, waiting included."""

    how: str
    key: str
    seconds: float


async def check_candidate(candidate: Candidate, core: Settings, use_scorer: bool, timeout_s: float) -> CheckOutcome:
    """The isolated check of ``candidate``, run once per content key (:mod:`llmroute.serving.check_records`):
    skipped when this host or (for a registry version) the registry recorded a pass of the same key;
    otherwise run under the host's lock for the key, and the pass recorded (and tagged on the registry
    version: best effort, a read-only registry only costs other replicas their own check). Raises
    :class:`CandidateRejected` as :func:`check_in_child` does."""
    from starlette.concurrency import run_in_threadpool

    from llmroute.serving.check_records import CHECKS_DIR, CheckLockTimeout, CheckRecords, check_key

    t0 = time.monotonic()
    key = await run_in_threadpool(check_key, Path(candidate.source), use_scorer)
    records = CheckRecords(core.home / CHECKS_DIR)
    if await run_in_threadpool(records.passed, key):
        return CheckOutcome("host", key, time.monotonic() - t0)
    if candidate.registry_version is not None and await run_in_threadpool(_registry_passed, candidate, core, key):
        await run_in_threadpool(records.record_pass, key, {"version": candidate.registry_version, "by": "registry"})
        return CheckOutcome("registry", key, time.monotonic() - t0)
    lock = records.exclusive(key, timeout_s + 30.0)
    try:
        await run_in_threadpool(lock.__enter__)
    except CheckLockTimeout as exc:
        raise CandidateRejected(f"{candidate.label}: {exc}") from exc
    try:
        if await run_in_threadpool(records.passed, key):  # the lock's previous holder passed it
            return CheckOutcome("host", key, time.monotonic() - t0)
        version = await check_in_child(candidate, core, use_scorer, timeout_s)
        await run_in_threadpool(records.record_pass, key, {"version": version, "label": candidate.label})
    finally:
        await run_in_threadpool(lock.__exit__, None, None, None)
    if candidate.registry_version is not None:
        await run_in_threadpool(_tag_registry_pass, candidate, core, key)
    return CheckOutcome("ran", key, time.monotonic() - t0)


def _registry_passed(candidate: Candidate, core: Settings, key: str) -> bool:
    from llmroute.artifacts.registry import CHECKED_TAG, version_tag

    try:
        return version_tag(str(candidate.registry_version), CHECKED_TAG, core) == key
    except Exception as exc:  # noqa: BLE001 - no record read: the check runs here
        log.info("cannot read the check tag of %s (%s): checking it here", candidate.registry_version, exc)
        return False


def _tag_registry_pass(candidate: Candidate, core: Settings, key: str) -> None:
    from llmroute.artifacts.registry import CHECKED_TAG, set_version_tag

    try:
        set_version_tag(str(candidate.registry_version), CHECKED_TAG, key, core)
    except Exception as exc:  # noqa: BLE001 - best effort: other replicas then run their own check
        log.info("cannot tag %s with its passed check (%s): other replicas will check it themselves",
                 candidate.registry_version, exc)


def _load_with_stand_in(folder: Path, use_scorer: bool) -> tuple[Any, Any]:
    """The router (and scorer) in ``folder`` with a :class:`StandInEmbedder`, through the one loader: every
    file checksum-verified and parsed by the native code that will parse it in the server, without
    loading the embedding model."""
    stand_in: list[StandInEmbedder] = []

    def embedder_for(entry: Any) -> Any:
        stand_in.append(StandInEmbedder(str(entry["spec"]), str(entry["fingerprint"])))
        return stand_in[-1]

    router, scorer = load_served(folder, Settings(), use_scorer, embedder_for=embedder_for)
    stand_in[0].dim = int(router.quality.index_.embeddings.shape[1])
    return router, scorer


def _child(request: str, err_path: str, send: Any) -> None:
    """The child's side (forked from the check server): stderr to ``err_path`` (a native crash's last
    words), load the candidate folder with a stand-in embedder, smoke-route it and send the finding."""
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    req = json.loads(request)
    try:
        router, scorer = _load_with_stand_in(Path(req["model"]), req["use_scorer"])
        checked = smoke_served(router, scorer)
    except Exception as exc:  # noqa: BLE001 - every failure is the candidate's finding
        send.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    send.send({"ok": True, "version": router.version, "checked": checked, "scorer": scorer is not None})
