"""Helpers for tests that start real server processes (``mlflow server``, ``llmroute serve``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# Debian installs daemons and root's tools (haproxy, runuser) in the sbin folders, which a non-login shell's
# PATH may leave out.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def system_command(name: str) -> str | None:
    """The absolute path of the program ``name``: found on PATH or in the sbin folders; None when absent."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a server started with ``start_new_session=True`` (its own process group, so worker
    children go too): SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def group_gone(pgid: int, limit_s: float = 10.0) -> float:
    """``time.monotonic()`` at the moment no live (non-zombie) process of the group ``pgid`` is left, read from
    /proc every 5 ms; AssertionError if some are still alive after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive:
            return time.monotonic()
        time.sleep(0.005)
    raise AssertionError(f"processes of group {pgid} still alive {limit_s} s after SIGKILL")
