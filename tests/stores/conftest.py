"""Store fixtures: one backend per contract subclass, and a foreign lock on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest


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
