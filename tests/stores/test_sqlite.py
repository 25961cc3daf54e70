"""SQLite specifics: which writes wait for the disk, where the WAL is checkpointed, purging."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flask_hooks.stores import sqlite as sqlite_store
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
NS = "hooks"


def commits(store: SqliteStore, work: list[str]) -> list[tuple[str, str]]:
    """(first statement, synchronous mode) of each transaction the store commits while doing ``work``."""
    # Connect first, and end on a durable write: the trace starts in the configured mode.
    warm = store.claim(NS, "warm-up", now=T0, lease=30, ttl=60)
    store.complete(NS, "warm-up", warm.token, outcome="received", reply=None, now=T0, ttl=60)
    trace: list[str] = []
    store._cursor().connection.set_trace_callback(trace.append)
    claim = store.claim(NS, "evt_1", now=T0, lease=30, ttl=60)
    if "mark" in work:
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
    if "complete" in work:
        entry = LogEntry("evt_1", "a.b", "received", 200)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60, entry=entry)
    if "renew" in work:
        store.renew(NS, "evt_1", claim.token, now=T0 + 10, lease=30)
    if "release" in work:
        store.release(NS, "evt_1", claim.token, now=T0)
    if "log" in work:
        store.log(NS, LogEntry(None, None, "rejected", 401))
    mode, first, out = store.synchronous, "", []
    for sql in trace:
        if sql.startswith("PRAGMA synchronous="):
            mode = sql.partition("=")[2]
        elif sql == "BEGIN IMMEDIATE":
            first = ""
        elif sql == "COMMIT":
            out.append((first, mode))
        elif not first:
            first = sql.split()[0] + " " + sql.split()[1]
    return out


def test_completions_and_marks_wait_for_the_disk_claims_do_not(tmp_path: Path) -> None:
    # A claim lost in a power cut is an expired lease: the retry runs the handler
    # either way. A lost completion or mark would run a handler twice.
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    assert commits(store, ["mark", "complete"]) == [
        ("INSERT OR", "NORMAL"),
        ("SELECT handlers", "FULL"),
        ("UPDATE hooks_deliveries", "FULL"),
    ]


def test_renewals_releases_and_log_lines_do_not_wait(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    modes = [mode for _, mode in commits(store, ["renew", "release", "log"])]
    assert modes == ["NORMAL"] * 4


@pytest.mark.parametrize(
    ("configured", "relaxed"), [("EXTRA", "NORMAL"), ("NORMAL", "NORMAL"), ("OFF", "OFF")]
)
def test_configured_mode_bounds_both(tmp_path: Path, configured: str, relaxed: str) -> None:
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"), synchronous=configured)
    assert [mode for _, mode in commits(store, ["complete"])] == [relaxed, configured]


def test_wal_is_checkpointed_outside_the_writers_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own checkpoint runs inside the commit that crosses its threshold,
    # so every other writer waits for its fsync of the database file.
    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_EVERY", 4)
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    store.log(NS, LogEntry(None, None, "rejected", 401))  # connect first
    held = [False]
    writers = store._writers
    acquire, release = writers.acquire, writers.release

    def locking() -> None:
        acquire()
        held[0] = True

    def unlocking(*, close_files: bool = False) -> None:
        held[0] = False
        release(close_files=close_files)

    monkeypatch.setattr(writers, "acquire", locking)
    monkeypatch.setattr(writers, "release", unlocking)
    trace: list[tuple[str, bool]] = []
    cursor = store._cursor()
    cursor.connection.set_trace_callback(lambda sql: trace.append((sql, held[0])))
    assert cursor.execute("PRAGMA wal_autocheckpoint").fetchone() == (sqlite_store._BACKSTOP_PAGES,)
    trace.clear()
    for n in range(8):
        store.log(NS, LogEntry(f"evt_{n}", None, "rejected", 401))
    checkpoints = [locked for sql, locked in trace if sql.startswith("PRAGMA wal_checkpoint")]
    assert checkpoints == [False, False]


def test_expired_rows_are_purged_by_workers_that_never_live_long(tmp_path: Path) -> None:
    """Workers restarted after fewer completions than the purge interval (gunicorn --max-requests)."""
    path = str(tmp_path / "hooks.sqlite3")
    first = SqliteStore(path, synchronous="OFF")
    for n in range(300):
        first.claim(NS, f"old_{n}", now=T0, lease=30, ttl=60)  # abandoned, expired by T0 + 60
    first.close()
    later = T0 + 3600
    for worker in range(3):
        store = SqliteStore(path, synchronous="OFF")
        for n in range(sqlite_store._PURGE_EVERY // 2):
            id = f"w{worker}_{n}"
            claim = store.claim(NS, id, now=later, lease=30, ttl=86400)
            entry = LogEntry(id, "a.b", "received", 200)
            store.complete(NS, id, claim.token, outcome="received", reply=None, now=later, ttl=9, entry=entry)
        store.close()
    conn = sqlite3.connect(path)
    try:
        counts = conn.execute(
            "SELECT sum(id LIKE 'old_%'), sum(id LIKE 'w%') FROM hooks_deliveries"
        ).fetchone()
    finally:
        conn.close()
    assert counts == (0, 3 * sqlite_store._PURGE_EVERY // 2)
