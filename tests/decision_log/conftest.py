"""Decision-log fixtures: a SQLite URL per test and a throwaway PostgreSQL cluster per session."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import system_command
from tests.tiers import slow_fixture


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.sqlite'}"


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
@slow_fixture("starts PostgreSQL")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's binaries, run as the ``postgres`` user).

    Yields a server URL without a database name; always stopped and deleted in teardown.
    """
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to run the server as")
        runuser = system_command("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser (util-linux) is not installed to run the server as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="llmroute-pg-"))
    base.chmod(0o755)
    data, sock, logfile = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if owner is not None:
        for p in (base, sock):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=60)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "30",
                        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=off "
                              "-c max_connections=50",
                        "start"], check=True, capture_output=True, timeout=60)
        started = True
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
        _wait_ready(url)
        yield url
    except subprocess.CalledProcessError as exc:
        log = logfile.read_text() if logfile.exists() else ""
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr!r}\n{log}") from exc
    finally:
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(url: str, timeout_s: float = 30) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server}/{name}"
