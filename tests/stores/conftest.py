"""Store fixtures: one backend per contract subclass, a foreign lock on SQLite, redis-servers with options."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.helpers import wait_for_port


class ForeignLock:
    """Another program holding the SQLite file with ``BEGIN EXCLUSIVE``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def acquire(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


@pytest.fixture
def foreign_lock() -> Iterator[type[ForeignLock]]:
    locks: list[ForeignLock] = []

    class Tracked(ForeignLock):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            locks.append(self)

    try:
        yield Tracked
    finally:
        for lock in locks:
            lock.release()


class ConfiguredRedis(RedisServer):
    """The conftest server, started with extra options."""

    def __init__(self, workdir: Path, options: Sequence[str]) -> None:
        super().__init__(workdir)
        self.options = list(options)

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed; run `make test`, which installs it")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, "redis-server", timeout=10)


@pytest.fixture
def redis_with(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """``redis_with("--maxmemory-policy", "allkeys-lru")`` starts a server and returns its URL."""
    servers: list[ConfiguredRedis] = []

    def start(*options: str) -> str:
        server = ConfiguredRedis(tmp_path_factory.mktemp("redis-opts"), options)
        servers.append(server)
        server.start()
        return server.url

    try:
        yield start
    finally:
        for server in reversed(servers):  # replicas first: a master's shutdown waits for its replicas
            server.stop()
