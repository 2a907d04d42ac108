"""Reload as a transaction: a candidate router is checked where it cannot hurt before it is swapped in.

:func:`prepare_candidate` (blocking) and :func:`check_in_child` (async) do, in order:

1. **Pin** the source: a folder is copied to a private snapshot (what is checked is exactly what is
   loaded, even while someone is still copying files into the folder); a registry URI is pinned to
   the version it points at now (``models:/name/7``).
2. **Checksums**: the folder's ``manifest.json`` (written by ``llmroute train`` and at registration)
   is verified; a missing, truncated or altered file is named. Every LightGBM model file must end
   with LightGBM's closing sections (a truncated copy without a manifest).
3. **Isolation**: a child process (``python -m llmroute.serving.candidate``) loads the candidate (a
   folder with a :class:`~llmroute.router.smoke.StandInEmbedder`, so no embedding weights are loaded;
   a registry version fully, after its checksums) and smoke-routes it (:func:`llmroute.router.smoke.smoke_route`: every model, both rules, a cost cap;
   the response scorer scores an answer). A native crash there (LightGBM aborts the process on a
   truncated model file) kills only the child; its exit signal and the end of its stderr are the
   reason reported.

The server then loads the pinned candidate itself and smoke-routes it again in-process
(:mod:`llmroute.serving.reloading`); only then is it swapped in. Any failure keeps the old router.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmroute.artifacts.loading import REGISTRY_PREFIX, RouterLoadError, load_served, resolve_folder
from llmroute.artifacts.manifest import verify_manifest
from llmroute.config import Settings
from llmroute.router.smoke import RouterSmokeError, StandInEmbedder, smoke_route


@dataclass(frozen=True)
class Candidate:
    """A pinned candidate: ``source`` to load (a snapshot folder or a pinned registry URI); ``snapshot``
    is the temporary folder to delete once loaded (None for a registry URI)."""

    source: str
    label: str
    snapshot: Path | None = None

    def discard(self) -> None:
        if self.snapshot is not None:
            shutil.rmtree(self.snapshot, ignore_errors=True)


class CandidateRejected(RuntimeError):
    """The candidate failed a check; the message says which and why."""


def prepare_candidate(model: str, core: Settings, pinned_version: str | None = None) -> Candidate:
    """Pin ``model`` (see the module docstring) and verify a folder's checksums. Blocking."""
    if model.startswith(REGISTRY_PREFIX):
        if pinned_version is None:
            return Candidate(model, model)
        return Candidate(f"{REGISTRY_PREFIX}{pinned_version}", f"{model} (version {pinned_version})")
    folder = resolve_folder(model, core)  # LATEST: the router the last `llmroute train` saved, now
    if not (folder / "router.json").is_file():
        raise RouterLoadError(f"{folder} is not a saved router folder (no router.json)")
    core.home.mkdir(parents=True, exist_ok=True)
    snapshot = Path(tempfile.mkdtemp(prefix="reload-", dir=core.home))
    try:
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


async def check_in_child(candidate: Candidate, core: Settings, use_scorer: bool, timeout_s: float) -> str:
    """Load and smoke-route ``candidate`` in a child process; returns its router version, or raises
    :class:`CandidateRejected` with the child's reason (its error, crash signal or a timeout)."""
    request = json.dumps({"model": candidate.source, "core": core.model_dump(mode="json"), "use_scorer": use_scorer})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmroute.serving.candidate",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(request.encode()), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CandidateRejected(f"{candidate.label}: the isolated check did not finish in {timeout_s:g} s") from None
    except asyncio.CancelledError:
        proc.kill()
        raise
    result: dict[str, Any] = {}
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            break
    code = proc.returncode or 0
    if code == 0 and result.get("ok"):
        return str(result["version"])
    if result.get("error"):
        raise CandidateRejected(f"{candidate.label}: {result['error']}")
    tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])[-600:]
    how = f"crashed ({_signal_name(code)})" if code < 0 else f"exited with status {code}"
    raise CandidateRejected(f"{candidate.label}: loading it {how} in the isolated check process: {tail or 'no output'}")


def _load_with_stand_in(folder: Path, core: Settings, use_scorer: bool) -> tuple[Any, Any]:
    """The router (and scorer) in ``folder`` with a :class:`StandInEmbedder`: every file checksum-verified
    and parsed by the native code that will parse it in the server, without loading the embedding model."""
    stand_in: list[StandInEmbedder] = []

    def embedder_for(entry: Any) -> Any:
        stand_in.append(StandInEmbedder(str(entry["spec"]), str(entry["fingerprint"])))
        return stand_in[-1]

    router, scorer = load_served(str(folder), core, use_scorer, embedder_for=embedder_for)
    stand_in[0].dim = int(router.quality.index_.embeddings.shape[1])
    return router, scorer


def _child() -> int:
    """The child's side: load the candidate, smoke-route it, print one JSON line. Exit 0 when it passed."""
    request = json.loads(sys.stdin.read())
    try:
        core = Settings(**request["core"])
        if request["model"].startswith(REGISTRY_PREFIX):  # checksum-verified before parsing; real embedder
            router, scorer = load_served(request["model"], core, request["use_scorer"])
        else:
            router, scorer = _load_with_stand_in(Path(request["model"]), core, request["use_scorer"])
        checked = smoke_served(router, scorer)
    except Exception as exc:  # noqa: BLE001 - every failure is the candidate's finding
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 2
    print(json.dumps({"ok": True, "version": router.version, "checked": checked, "scorer": scorer is not None}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
