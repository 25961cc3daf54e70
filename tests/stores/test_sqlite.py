"""SQLite specifics: which writes wait for the disk, what rides in one transaction, where the
WAL is checkpointed, purging."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from flask_hooks.core.errors import LeaseLost
from flask_hooks.core.inbox import Kept
from flask_hooks.stores import _sqlite_conn
from flask_hooks.stores import sqlite as sqlite_store
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sqlite import SqliteStore
from tests.helpers import complete_each_then_log_its_duplicate

T0 = 1_700_000_000.0
NS = "hooks"
KEEP = Kept("a.b", b'{"id": "evt_1"}', (("Content-Type", "application/json"),), T0, 0, 7 * 86400)


def transactions(store: SqliteStore, work: Callable[[], object]) -> list[tuple[list[str], str]]:
    """(statements, synchronous mode) of each transaction the store commits while doing ``work``.

    Statements are their first two words; the mode is that of the connection that ran them (one
    per mode and thread). SQLite traces a statement again for each row its trigger runs on: a
    repeat is not counted.
    """
    store.log(NS, LogEntry(None, None, "rejected", 401))  # connect first
    trace: list[tuple[str, str]] = []
    connections = traced(store, lambda mode: lambda sql: trace.append((sql, mode)))
    work()
    for conn in connections:
        conn.set_trace_callback(None)
    current, out = list[str](), []
    for (sql, mode), previous in zip(trace, [("", ""), *trace], strict=False):
        if (sql, mode) == previous:
            continue
        if sql == "BEGIN IMMEDIATE":
            current = []
        elif sql == "COMMIT":
            out.append((current, mode))
            current = []  # what runs outside a transaction (a checkpoint) belongs to none
        else:
            current.append(" ".join(sql.split()[:2]))
    return out


def traced(
    store: SqliteStore, callback: Callable[[str], Callable[[str], object]]
) -> list[sqlite3.Connection]:
    """This thread's connections, each tracing to ``callback(its synchronous mode)``."""
    local = store._conn()
    conns = list({local.cur.connection, local.relaxed.connection})  # one, when the modes are equal
    for conn in conns:
        (level,) = conn.execute("PRAGMA synchronous").fetchone()  # the mode it really has
        conn.set_trace_callback(callback(["OFF", "NORMAL", "FULL", "EXTRA"][level]))
    return conns


def commits(store: SqliteStore, work: list[str]) -> list[tuple[str, str]]:
    """(first statement, synchronous mode) of each transaction of the named steps on ``evt_1``."""

    def run() -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=30, ttl=60)
        if "mark" in work:
            store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        if "complete" in work:
            entry = LogEntry("evt_1", "a.b", "received", 200)
            store.complete(
                NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60, entry=entry
            )
        if "renew" in work:
            store.renew(NS, "evt_1", claim.token, now=T0 + 10, lease=30)
        if "release" in work:
            store.release(NS, "evt_1", claim.token, now=T0)
        if "log" in work:
            store.log(NS, LogEntry(None, None, "rejected", 401))

    return [(statements[0], mode) for statements, mode in transactions(store, run)]


def test_completions_and_marks_wait_for_the_disk_claims_do_not(tmp_path: Path) -> None:
    # A claim lost in a power cut is an expired lease: the retry runs the handler
    # either way. A lost completion or mark would run a handler twice.
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    assert commits(store, ["mark", "complete"]) == [
        ("INSERT INTO", "NORMAL"),
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


def test_the_kept_copy_and_the_attempts_ride_in_the_deliverys_own_transactions(tmp_path: Path) -> None:
    """The inbox costs no transaction (no commit, no disk sync) of its own."""
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))

    def deliver(n: int, fail: bool) -> None:
        id = f"evt_{n}"
        claim = store.claim(NS, id, now=T0, lease=30, ttl=60, keep=KEEP)
        entry = LogEntry(id, "a.b", "error" if fail else "received", 500 if fail else 200)
        if fail:
            store.release(NS, id, claim.token, now=T0, entry=entry)
        else:
            store.complete(NS, id, claim.token, outcome="received", reply=None, now=T0, ttl=60, entry=entry)

    def run() -> None:
        deliver(1, fail=True)
        deliver(1, fail=False)  # the retry: the first copy stays, a second attempt is added
        deliver(2, fail=False)

    done = transactions(store, run)
    assert len(done) == 6  # two per attempt, as without the inbox
    claim, release, retry, completion, _, _ = done
    assert claim == (["INSERT INTO", "INSERT INTO"], "NORMAL")  # the record with its kept columns, the copy
    assert release[1] == "NORMAL" and release[0][0] == "UPDATE hooks_deliveries"
    assert "INSERT INTO" in release[0]  # the log line, with the attempt
    assert retry == (["INSERT INTO", "SELECT state,", "UPDATE hooks_deliveries"], "NORMAL")
    assert completion == (["UPDATE hooks_deliveries", "INSERT INTO"], "FULL")
    kept = store.get(NS, "evt_1")
    assert kept is not None and [a.status for a in kept.attempts] == ["error", "received"]


def test_wal_is_checkpointed_outside_the_writers_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own checkpoint runs inside the commit that crosses its threshold,
    # so every other writer waits for its fsync of the database file.
    monkeypatch.setattr(_sqlite_conn, "_CHECKPOINT_EVERY", 4)
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
    for conn in traced(store, lambda mode: lambda sql: trace.append((sql, held[0]))):
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (_sqlite_conn._BACKSTOP_PAGES,)
    trace.clear()
    for n in range(8):
        store.log(NS, LogEntry(f"evt_{n}", None, "rejected", 401))
    checkpoints = [locked for sql, locked in trace if sql.startswith("PRAGMA wal_checkpoint")]
    assert checkpoints == [False, False]


def count(path: str, sql: str) -> tuple[int, ...]:
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(sql).fetchone())
    finally:
        conn.close()


def test_expired_rows_are_purged_by_workers_that_never_live_long(tmp_path: Path) -> None:
    """Workers restarted after fewer completions than the purge interval (gunicorn --max-requests)."""
    path = str(tmp_path / "hooks.sqlite3")
    first = SqliteStore(path, synchronous="OFF")
    for n in range(sqlite_store._SWEEP_MAX):  # what one sweep removes
        first.claim(NS, f"old_{n}", now=T0, lease=30, ttl=60)  # abandoned, expired by T0 + 60
    kept = first.claim(NS, "kept", now=T0, lease=30, ttl=60, keep=KEEP)  # retained for 7 days
    first.complete(NS, "kept", kept.token, outcome="received", reply=None, now=T0, ttl=60)
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
    counts = count(
        path, "SELECT sum(id LIKE 'old_%'), sum(id LIKE 'w%'), sum(id = 'kept') FROM hooks_deliveries"
    )
    assert counts == (0, 3 * sqlite_store._PURGE_EVERY // 2, 1)  # by the retention, not the TTL


@pytest.mark.parametrize("first_lines", [1, 2])
def test_the_sweep_runs_whichever_lines_take_the_multiples(tmp_path: Path, first_lines: int) -> None:
    """Each delivery completed, then its duplicate logged: the completions took every other
    line number, and only a completion's could start the sweep; started odd, they never did
    and expired rows piled up for good."""
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path, synchronous="OFF")
    for _ in range(first_lines):
        store.log(NS, LogEntry(None, None, "rejected", 401, received_at=T0))
    complete_each_then_log_its_duplicate(store, NS, T0, 4 * sqlite_store._PURGE_EVERY)
    store.close()
    # Each expired 90 s after its completion: all but those of the last sweep's interval go.
    assert count(path, "SELECT count(*) FROM hooks_deliveries") <= (sqlite_store._PURGE_EVERY,)


def test_the_sweep_runs_after_the_completion_in_short_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "_PURGE_EVERY", 4)
    monkeypatch.setattr(sqlite_store, "_SWEEP_MAX", 4 * sqlite_store._PURGE_BATCH)
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path, synchronous="OFF")
    expired = 3 * sqlite_store._PURGE_BATCH + 5
    for n in range(expired):
        store.claim(NS, f"old_{n}", now=T0, lease=30, ttl=60, keep=KEEP._replace(retention=60))

    def deliver() -> None:
        for n in range(4):  # the fourth log line triggers the sweep
            id, now = f"new_{n}", T0 + 3600
            claim = store.claim(NS, id, now=now, lease=30, ttl=60)
            entry = LogEntry(id, "a.b", "received", 200)
            store.complete(NS, id, claim.token, outcome="received", reply=None, now=now, ttl=60, entry=entry)

    done = transactions(store, deliver)
    sweeps = [statements for statements, _ in done if statements == ["DELETE FROM"]]
    assert len(sweeps) == 4  # 3 full batches and the rest, each its own transaction
    assert all("DELETE FROM" not in statements for statements, _ in done if statements != ["DELETE FROM"])
    assert count(path, "SELECT count(*) FROM hooks_deliveries WHERE id LIKE 'old_%'") == (0,)
    assert count(path, "SELECT count(*) FROM hooks_kept") == (0,)  # the bodies went with them


def test_a_completion_after_the_lease_still_keeps_the_record_for_its_ttl(tmp_path: Path) -> None:
    """The claim retains the record as if completed when its lease ends; a later completion
    (a handler that outran it, renewed) moves the retention to its own TTL."""
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    for id, done in (("on-time", T0 + 10), ("late", T0 + 500)):
        claim = store.claim(NS, id, now=T0, lease=30, ttl=60)
        store.renew(NS, id, claim.token, now=T0 + 20, lease=30)
        store.complete(NS, id, claim.token, outcome="received", reply=None, now=done, ttl=60)
    assert store.purge(NS, now=T0 + 555) == 1  # on-time: its TTL ran out at T0 + 70
    assert store.claim(NS, "late", now=T0 + 555, lease=30, ttl=60).state == "done"
    assert store.purge(NS, now=T0 + 561) == 1
    with pytest.raises(LeaseLost):
        store.complete(NS, "late", "stale-token", outcome="received", reply=None, now=T0, ttl=60)


def test_each_receivers_log_is_trimmed_whatever_the_others_write_between(tmp_path: Path) -> None:
    """Two receivers fed in turn: one took every odd line number, and trimming at multiples of
    64 of the shared sequence left its log to grow without end."""
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path, synchronous="OFF", log_size=10)
    for n in range(40 * sqlite_store._TRIM_EVERY):
        for ns in ("billing", "shipping"):
            store.log(ns, LogEntry(f"evt_{n}", "a.b", "received", 200))
    store.close()
    lines = count(path, "SELECT sum(ns = 'billing'), sum(ns = 'shipping') FROM hooks_log")
    assert max(lines) <= 10 + 20 * sqlite_store._TRIM_EVERY, lines
