"""A SQLite file deleted or replaced under a running store: a 503, never an acknowledgement into it."""

from __future__ import annotations

import glob
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flask_hooks.core.errors import StoreUnavailable
from flask_hooks.core.inbox import Kept
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
NS = "hooks"


def state(path: str, id: str) -> str | None:
    """The delivery's state as a fresh reader of the file at ``path`` sees it."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT state FROM hooks_deliveries WHERE id = ?", (id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def rm(path: str) -> None:
    os.remove(path)


def rm_all(path: str) -> None:
    """``rm hooks.sqlite3*``: the WAL, its index and the lock files too."""
    for name in glob.glob(glob.escape(path) + "*"):
        os.remove(name)


def mv_and_create(path: str) -> None:
    os.rename(path, path + ".old")
    open(path, "wb").close()  # an empty file is an empty SQLite database


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"))
    try:
        yield store
    finally:
        store.close()


def deliver(store: SqliteStore, id: str) -> None:
    claim = store.claim(NS, id, now=T0, lease=30, ttl=60)
    assert claim.state == "new"
    store.complete(NS, id, claim.token, outcome="received", reply=None, now=T0, ttl=60)


@pytest.mark.parametrize("replace", [rm, rm_all, mv_and_create])
@pytest.mark.parametrize("durable", ["complete", "mark"])
def test_a_replaced_file_is_unavailable_then_the_new_file_is_used(
    store: SqliteStore,
    replace: Callable[[str], None],
    durable: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deliver(store, "evt_1")
    claim = store.claim(NS, "evt_2", now=T0, lease=30, ttl=60)
    replace(store.path)
    with caplog.at_level(logging.ERROR, "flask_hooks"), pytest.raises(StoreUnavailable):
        if durable == "complete":
            store.complete(NS, "evt_2", claim.token, outcome="received", reply=None, now=T0, ttl=60)
        else:
            store.mark(NS, "evt_2", claim.token, "first", None, now=T0)
    [record] = [r for r in caplog.records if r.name == "flask_hooks"]
    assert record.levelno == logging.ERROR
    assert store.path in record.getMessage()
    assert "replaced or removed" in record.getMessage()
    # The next call opens the file now at the path, which never saw either delivery.
    deliver(store, "evt_2")
    assert (state(store.path, "evt_1"), state(store.path, "evt_2")) == (None, "done")
    assert os.path.exists(store.path + ".lock")  # the sidecar files were opened afresh


def test_every_thread_moves_to_the_new_file(store: SqliteStore) -> None:
    """Claims from other threads go to the new file too, not into the one that was removed."""
    claims: list[str] = []

    def in_a_thread(id: str) -> None:
        claim = store.claim
        thread = threading.Thread(target=lambda: claims.append(claim(NS, id, now=T0, lease=30, ttl=60).state))
        thread.start()
        thread.join(10)
        assert not thread.is_alive()

    in_a_thread("evt_a")  # that thread now has its own connection, to the old file
    claim = store.claim(NS, "evt_1", now=T0, lease=30, ttl=60)
    rm(store.path)
    with pytest.raises(StoreUnavailable):
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)
    in_a_thread("evt_b")
    assert claims == ["new", "new"]
    assert state(store.path, "evt_b") == "inflight"


def test_a_file_left_in_place_keeps_working(store: SqliteStore) -> None:
    deliver(store, "evt_1")
    os.utime(store.path)  # touched, not replaced
    deliver(store, "evt_2")
    assert state(store.path, "evt_2") == "done"


@pytest.mark.parametrize("replace", [rm, rm_all, mv_and_create])
def test_a_claim_into_a_replaced_file_is_refused_before_any_handler_runs(
    store: SqliteStore, replace: Callable[[str], None]
) -> None:
    """Else the handler would run on that claim, and again on the retry that follows the 503."""
    deliver(store, "evt_1")
    replace(store.path)
    with pytest.raises(StoreUnavailable):
        store.claim(NS, "evt_2", now=T0, lease=30, ttl=60)
    assert store.claim(NS, "evt_2", now=T0, lease=30, ttl=60).state == "new"  # in the new file
    assert state(store.path, "evt_2") == "inflight"


def deliver_kept(store: SqliteStore, id: str) -> None:
    keep = Kept("a.b", b'{"n": 1}', (("Content-Type", "application/json"),), T0, 0, 86400)
    claim = store.claim(NS, id, now=T0, lease=30, ttl=60, keep=keep)
    store.release(NS, id, claim.token, now=T0)  # its handler failed: an operator will replay it


@pytest.mark.parametrize("replace", [rm, rm_all, mv_and_create])
def test_a_replay_into_a_replaced_file_is_refused_before_any_handler_runs(
    store: SqliteStore, replace: Callable[[str], None]
) -> None:
    """As a claim: the replay's handlers would run, and again on the sender's retry into the
    new file, which knows nothing of the delivery."""
    deliver_kept(store, "evt_1")
    replace(store.path)
    with pytest.raises(StoreUnavailable):
        store.reopen(NS, "evt_1", now=T0 + 1, lease=30)
    with pytest.raises(LookupError):  # the new file knows nothing of it
        store.reopen(NS, "evt_1", now=T0 + 1, lease=30)


@pytest.mark.parametrize("replace", [rm, rm_all, mv_and_create])
def test_reads_show_the_file_now_at_the_path(store: SqliteStore, replace: Callable[[str], None]) -> None:
    """The inbox, the dashboard and the CLI read what a retry would find, not a removed file."""
    deliver_kept(store, "evt_1")
    assert store.get(NS, "evt_1") is not None
    replace(store.path)
    assert store.get(NS, "evt_1") is None
    assert store.query(NS, now=T0) == []
    deliver_kept(store, "evt_2")
    assert [s.id for s in store.query(NS, now=T0)] == ["evt_2"]


@pytest.mark.parametrize("durable", ["claim", "complete"])
def test_a_deleted_wal_is_unavailable_and_what_it_held_is_kept(
    store: SqliteStore, durable: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``rm hooks.sqlite3-wal`` under a running app: acknowledging into the deleted WAL loses
    the delivery when the process stops (and every commit not yet copied into the database)."""
    deliver(store, "evt_1")  # in the WAL only: no checkpoint yet
    claim = store.claim(NS, "evt_2", now=T0, lease=30, ttl=60)
    rm(store.path + "-wal")
    with caplog.at_level(logging.ERROR, "flask_hooks"), pytest.raises(StoreUnavailable):
        if durable == "claim":
            store.claim(NS, "evt_3", now=T0, lease=30, ttl=60)
        else:
            store.complete(NS, "evt_2", claim.token, outcome="received", reply=None, now=T0, ttl=60)
    assert any("-wal" in r.getMessage() for r in caplog.records if r.name == "flask_hooks")
    # Without the running store's connections, a fresh reader finds the earlier delivery.
    store.close()
    assert (state(store.path, "evt_1"), state(store.path, "evt_3")) == ("done", None)
    deliver(store, "evt_3")
    assert state(store.path, "evt_3") == "done"


def state_in_another_process(path: str, id: str) -> str:
    """As :func:`state`, from a new process: one that opens the database after the fault."""
    code = (
        "import sqlite3, sys; row = sqlite3.connect(sys.argv[1]).execute("
        "'SELECT state FROM hooks_deliveries WHERE id = ?', (sys.argv[2],)).fetchone(); print(row)"
    )
    done = subprocess.run([sys.executable, "-c", code, path, id], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_deleted_shm_is_unavailable_then_every_process_sees_the_same_commits(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """``rm hooks.sqlite3-shm``: a worker started next builds a new WAL index, which the
    running store's commits never reach: it would claim their deliveries as new."""
    deliver(store, "evt_1")
    rm(store.path + "-shm")
    with caplog.at_level(logging.ERROR, "flask_hooks"), pytest.raises(StoreUnavailable):
        store.claim(NS, "evt_2", now=T0, lease=30, ttl=60)
    assert any("-shm" in r.getMessage() for r in caplog.records if r.name == "flask_hooks")
    assert state_in_another_process(store.path, "evt_1") == "('done',)"
    deliver(store, "evt_2")  # into the index every process now shares
    assert state_in_another_process(store.path, "evt_2") == "('done',)"


def test_a_symlinked_file_is_used_and_a_link_pointed_elsewhere_is_a_replaced_file(tmp_path: Path) -> None:
    """SQLite follows the link and keeps the -wal and -shm beside the file it points to; they
    were looked for beside the link, so every delivery got a 503. Every link shares the lock
    beside the file, and a link pointed at another file is that file replaced."""
    (tmp_path / "data").mkdir()
    real, link = tmp_path / "data" / "hooks.sqlite3", tmp_path / "hooks.sqlite3"
    link.symlink_to(real)
    store, direct = SqliteStore(str(link)), SqliteStore(str(real))
    try:
        deliver(store, "evt_1")
        assert direct.claim(NS, "evt_1", now=T0, lease=30, ttl=60).state == "done"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "hooks.sqlite3"]  # all beside it
        other = tmp_path / "data" / "other.sqlite3"
        link.unlink()
        link.symlink_to(other)
        with pytest.raises(StoreUnavailable):
            store.claim(NS, "evt_2", now=T0, lease=30, ttl=60)
        deliver(store, "evt_2")
        assert (state(str(other), "evt_2"), state(str(real), "evt_2")) == ("done", None)
    finally:
        store.close()
        direct.close()
