"""The SQLite inbox beyond the contract: its query plans, its purge beside live writers."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_hooks.core.inbox import Kept
from flask_hooks.stores import _sqlite_inbox
from flask_hooks.stores import sqlite as sqlite_store
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
NS = "hooks"


def kept(n: int, type: str = "a.b", retention: float = 7 * 86400) -> Kept:
    return Kept(type, b'{"n": %d}' % n, (("Content-Type", "application/json"),), T0 + n, 0, retention)


def deliver(store: SqliteStore, id: str, keep: Kept, now: float, ttl: float = 60) -> None:
    claim = store.claim(NS, id, now=now, lease=30, ttl=ttl, keep=keep)
    entry = LogEntry(id, keep.type, "received", 200, received_at=now)
    store.complete(NS, id, claim.token, outcome="received", reply=None, now=now, ttl=ttl, entry=entry)


def plan(store: SqliteStore, **filters: object) -> list[str]:
    args: dict[str, object] = {
        "ns": NS, "now": T0, "status": None, "type": None, "since": None, "until": None, "before": None,
        "limit": 50,
    }  # fmt: skip
    sql, params = _sqlite_inbox.query_sql(**{**args, **filters})  # type: ignore[arg-type]
    return [row[3] for row in store._cursor().execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "hooks_deliveries_received"),  # the dashboard's first page
        ({"before": (T0, "evt_9")}, "hooks_deliveries_received"),  # and the next ones
        ({"type": "a.*", "since": T0}, "hooks_deliveries_received"),
        ({"status": "received"}, "hooks_deliveries_status"),
        ({"status": "in-flight", "before": (T0, "evt_9")}, "hooks_deliveries_status"),
        ({"status": "failed"}, "hooks_deliveries_status"),  # two ranges, merged in order
    ],
    ids=["first page", "next page", "type and since", "received", "in-flight", "failed"],
)
def test_queries_walk_an_index_in_order_and_never_sort(
    tmp_path: Path, filters: dict[str, object], index: str
) -> None:
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    deliver(store, "evt_1", kept(1), T0)
    steps = plan(store, **filters)
    assert any(f"USING INDEX {index} (ns=?" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in steps), steps
    assert [s for s in steps if "USING INTEGER PRIMARY KEY" in s]  # the body: one lookup per row shown


def test_type_patterns_are_case_sensitive_like_routing(tmp_path: Path) -> None:
    # SQLite's LIKE ignores ASCII case.
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    deliver(store, "lower", kept(1, "payment.done"), T0)
    deliver(store, "upper", kept(2, "Payment.done"), T0)
    assert [s.id for s in store.query(NS, now=T0, type="payment.*")] == ["lower"]
    assert [s.id for s in store.query(NS, now=T0, type="Payment")] == ["upper"]


def commit_times(store: SqliteStore, on_statement: Callable[[str], object] | None = None) -> list[float]:
    """When each of the store's transactions commits from now on (``perf_counter``: one clock
    for every process); ``on_statement`` sees the other statements."""
    times: list[float] = []

    def traced(sql: str) -> None:
        if sql == "COMMIT":
            times.append(time.perf_counter())
        elif on_statement is not None:
            on_statement(sql)

    store._cursor().connection.set_trace_callback(traced)
    return times


def write_until(path: str, ready: Any, go: Any, stop: Any, out: Any) -> None:
    """In another process (a worker): connect, then from ``go`` deliver until ``stop``; send
    back when each commit was."""
    store = SqliteStore(path, synchronous="OFF")
    store.deliveries(NS)  # connected (which takes the writers' lock too)
    commits = commit_times(store)
    ready.set()
    go.wait(30)
    n = 0
    while not stop.is_set():
        deliver(store, f"new_{n}", kept(n), T0)  # its sweeps find nothing: the old rows last until T0 + 60
        n += 1
    store.close()
    out.put(commits)


def wait_for_a_waiting_writer(path: str) -> None:
    """Until another writer waits for the lock: it holds the gate only while it waits (``_flock``)."""
    fd = os.open(path + ".gate", os.O_RDWR)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            time.sleep(0.001)
        pytest.fail("the other writer never came to wait for the lock")
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_purge_of_many_rows_lets_another_writer_in_between_its_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path, synchronous="OFF")
    batch = sqlite_store._PURGE_BATCH
    old = 10 * batch
    for n in range(old):
        deliver(store, f"old_{n}", kept(n, retention=60), T0)  # past its retention from T0 + 60
    ctx = multiprocessing.get_context("fork")
    ready, go, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=write_until, args=(path, ready, go, stop, out), daemon=True)

    def first_batch(sql: str) -> None:
        # Inside the first batch, the lock held: let the other process write, and hold on
        # until it waits for the lock, as a busy worker would.
        if sql.startswith("DELETE FROM hooks_deliveries") and not go.is_set():
            go.set()
            wait_for_a_waiting_writer(path)

    purges = commit_times(store, first_batch)
    writer.start()
    try:
        assert ready.wait(30)
        removed = store.purge(NS, now=T0 + 3600, limit=10 * old)
    finally:
        stop.set()
        go.set()
        writes = out.get(timeout=30)
        writer.join(30)
    assert removed == old
    assert len(purges) == old // batch + 1  # full batches, then one that finds nothing left
    assert [at for at in writes if purges[0] < at < purges[1]], "the other writer waited past a batch"
    conn = sqlite3.connect(path)
    try:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM hooks_deliveries WHERE id LIKE 'old_%'),"
            " (SELECT count(*) FROM hooks_deliveries WHERE id LIKE 'new_%'),"
            " (SELECT count(*) FROM hooks_kept)"
        ).fetchone()
    finally:
        conn.close()
    assert counts[0] == 0
    assert counts[1] == counts[2] > 0  # the bodies went with their deliveries, the others' stayed
    store.close()


def test_an_explicit_purge_leaves_the_lock_alone_between_its_batches(tmp_path: Path) -> None:
    """``flask hooks purge`` of a backlog: after each full batch, ``_PURGE_PAUSE`` times its
    duration without the lock, so receivers keep most of it; the sweep does not pause."""
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"), synchronous="OFF")
    batch = sqlite_store._PURGE_BATCH
    for n in range(3 * batch):
        deliver(store, f"old_{n}", kept(n, retention=60), T0)
    spans: list[tuple[float, float]] = []

    def traced(sql: str) -> None:
        if sql == "BEGIN IMMEDIATE":
            spans.append((time.perf_counter(), 0.0))
        elif sql == "COMMIT":
            spans[-1] = (spans[-1][0], time.perf_counter())

    store._cursor().connection.set_trace_callback(traced)
    assert store.purge(NS, now=T0 + 3600, limit=2 * batch) == 2 * batch
    (begin1, commit1), (begin2, _) = spans
    assert begin2 - commit1 >= sqlite_store._PURGE_PAUSE * (commit1 - begin1)
    store.close()


def wal_bytes(path: str) -> int:
    return os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0


def test_a_long_purge_never_lets_the_wal_grow_to_sqlites_own_checkpoint(tmp_path: Path) -> None:
    """A purge batch writes as much as ten deliveries: each full one is copied back outside the
    lock, so the WAL restarts, rather than growing until SQLite checkpoints inside a commit
    (every writer then waits for the database's fsync)."""
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path)
    batch = sqlite_store._PURGE_BATCH
    for n in range(11 * batch):
        deliver(store, f"old_{n:05d}", kept(n, retention=60), T0)
    side = sqlite3.connect(path)
    try:
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert store.purge(NS, now=T0 + 3600, limit=batch) == batch
        one = wal_bytes(path)
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert store.purge(NS, now=T0 + 3600, limit=10 * batch) == 10 * batch
        ten = wal_bytes(path)
    finally:
        side.close()
    assert one > 0 and ten <= 2 * one, (one, ten)
    store.close()


def test_workers_that_never_reach_their_own_checkpoint_cadence_checkpoint_with_the_sweep(
    tmp_path: Path,
) -> None:
    """Processes that make a few commits each (RQ's process per job, gunicorn's
    ``--max-requests``) never reached their own checkpoint every ``_CHECKPOINT_EVERY`` commits:
    the WAL grew to SQLite's own checkpoint (29 MB after 600 such jobs), run inside a commit."""
    path = str(tmp_path / "hooks.db")
    other = SqliteStore(path)  # another process's connection: the WAL is not dropped at each close
    other.log(NS, LogEntry(None, None, "rejected", 401))
    for n in range(300):
        job = SqliteStore(path)
        keep = Kept("a.b", b"x" * 2048, (("Host", "shop.example"),), T0, 0, 600.0)
        claim = job.claim(NS, f"evt_{n}", now=T0, lease=30, ttl=60, keep=keep)
        entry = LogEntry(f"evt_{n}", "a.b", "received", 200)
        job.complete(NS, f"evt_{n}", claim.token, outcome="received", reply=None, now=T0, ttl=60, entry=entry)
        job.close()
    assert wal_bytes(path) < 6 * 2**20  # about 15 MB without the sweep's checkpoint
    other.close()
