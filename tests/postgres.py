"""A throwaway PostgreSQL cluster for the SQL store's tests, and its fixtures.

``initdb`` into a fresh temporary directory, then ``postgres`` on a free
loopback port (and a unix socket in that directory), with ``fsync=off``:
nothing here needs to survive a power cut, only a crash or a restart of
the server, which still write everything to the operating system. The
cluster exists only for the test session; no database need exist before.

PostgreSQL refuses to run as root, and the tests run as root in CI: the
server then runs as the system user ``hookspg`` (created if missing), and
owns its temporary directory. Every wait is bounded, and the server is
stopped (fast shutdown, then SIGKILL) however the session ends.

Use from a test module (``tests/conftest.py`` is not ours to extend)::

    from tests.postgres import pg_url, postgres  # noqa: F401
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

#: The unprivileged user the server runs as when the tests run as root.
USER = "hookspg"
#: The cluster's superuser (trust authentication on loopback only).
SUPERUSER = "postgres"

SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "fatal",
    "logging_collector": "off",
    "dynamic_shared_memory_type": "mmap",
}


def _bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live: on ``PATH``, else Debian's versioned directory."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        pytest.fail("PostgreSQL is not installed (no initdb); run `make test`, which installs it")
    return Path(versions[-1]).parent


def _server_user() -> str | None:
    """The user to run the server as: ``hookspg`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            timeout=30,
            capture_output=True,
        )
    return USER


class PostgresServer:
    """One cluster: ``start``/``stop`` any number of times, ``destroy`` once at the end."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="hooks-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()
        self.socket_dir.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(argv, user=self.user, capture_output=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            pytest.fail(f"{argv[0]} failed:\n{result.stderr.decode(errors='replace')}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, database: str = SUPERUSER) -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database``, over TCP on loopback."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
        ]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, user=self.user, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                pytest.fail(f"postgres exited at start:\n{self.log.read_text(errors='replace')[-4000:]}")
            if self._accepts():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"postgres did not accept connections within {timeout} s")

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self._dsn(SUPERUSER), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def stop(self, *, mode: str = "fast", timeout: float = 10.0) -> None:
        """Shut down: ``fast`` (SIGINT: roll back, checkpoint) or ``immediate`` (SIGQUIT: no
        checkpoint, crash recovery at the next start); SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
            # The children of a killed postmaster exit once they notice; give them a moment.
            time.sleep(0.2)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # Databases.

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._dsn(SUPERUSER), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET statement_timeout = '30s'")
            conn.execute(sql.encode())

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"hooks_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_server: PostgresServer | None = None


def _destroy() -> None:
    global _server
    if _server is not None:
        _server.destroy()
        _server = None


atexit.register(_destroy)  # a second net for sessions that end without teardown


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's cluster (one per process, shared by every module that imports this)."""
    global _server
    if _server is None:
        _server = PostgresServer()
    try:
        _server.start()
        yield _server
    finally:
        _destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL to a fresh, empty database of this test's own (dropped afterwards)."""
    postgres.start()  # a test that stopped it may have failed before starting it again
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        if postgres.running:
            postgres.drop_database(name)
