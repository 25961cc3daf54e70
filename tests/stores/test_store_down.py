"""When the store goes away: ``StoreUnavailable`` (a 503), then recovery."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.core.errors import StoreUnavailable
from flask_hooks.core.event import Event
from flask_hooks.stores.redis import RedisStore
from flask_hooks.stores.sqlite import SqliteStore
from tests.conftest import RedisServer, generic_post

from .conftest import ForeignLock

T0 = 1_700_000_000.0


def test_redis_stopped_is_unavailable_then_recovers(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url)
    try:
        claim = store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        private_redis.stop()
        with pytest.raises(StoreUnavailable):
            store.claim("ns", "evt_2", now=T0, lease=30, ttl=60)
        with pytest.raises(StoreUnavailable):
            store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)
        with pytest.raises(StoreUnavailable):
            store.release("ns", "evt_1", claim.token, now=T0)
        with pytest.raises(StoreUnavailable):
            store.deliveries("ns")
        private_redis.start()
        assert store.claim("ns", "evt_2", now=T0, lease=30, ttl=60).state == "new"
    finally:
        store.close()


def test_redis_not_answering_is_unavailable(private_redis: RedisServer) -> None:
    """A hung server (SIGSTOP) is a timeout, and a timeout is a 503 like any other failure."""
    store = RedisStore.from_url(private_redis.url + "?socket_timeout=0.2")
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    try:
        store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable):
                store.claim("ns", "evt_2", now=T0, lease=30, ttl=60)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert store.claim("ns", "evt_3", now=T0, lease=30, ttl=60).state == "new"
    finally:
        store.close()


def test_sqlite_locked_by_a_foreign_writer(tmp_path: Path, foreign_lock: type[ForeignLock]) -> None:
    path = tmp_path / "hooks.sqlite3"
    store = SqliteStore(str(path), timeout=0.2)
    try:
        claim = store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        lock = foreign_lock(path)
        lock.acquire()
        with pytest.raises(StoreUnavailable):
            store.claim("ns", "evt_2", now=T0, lease=30, ttl=60)
        with pytest.raises(StoreUnavailable):
            store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)
        lock.release()
        store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)
        assert store.claim("ns", "evt_2", now=T0, lease=30, ttl=60).state == "new"
        assert store.claim("ns", "evt_1", now=T0, lease=30, ttl=60).state == "done"
    finally:
        store.close()


def _counting_app(make_app: Callable[..., Flask], store: str, calls: list[str]) -> Flask:
    hooks = Hooks()

    @hooks.on("*")
    def handle(event: Event) -> None:
        calls.append(event.id)

    return make_app(hooks, HOOKS_STORE=store)


def test_app_answers_503_while_redis_is_down(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    calls: list[str] = []
    app = _counting_app(make_app, private_redis.url, calls)
    client = app.test_client()
    try:
        private_redis.stop()
        down = generic_post(client, {"id": "evt_1", "type": "a.b"})
        assert down.status_code == 503
        assert down.json == {"status": "unavailable", "reason": "store unavailable"}
        assert "Retry-After" in down.headers
        assert calls == []
        private_redis.start()
        up = generic_post(client, {"id": "evt_1", "type": "a.b"})
        assert up.status_code == 200
        assert generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code == 200
        assert calls == ["evt_1"]
    finally:
        app.extensions["hooks"].receivers["hooks"].store.close()


def test_app_answers_503_while_sqlite_is_locked(
    make_app: Callable[..., Flask], tmp_path: Path, foreign_lock: type[ForeignLock]
) -> None:
    path = tmp_path / "locked.sqlite3"
    calls: list[str] = []
    app = _counting_app(make_app, f"sqlite:///{path}?timeout=0.2", calls)
    client = app.test_client()
    assert generic_post(client, {"id": "evt_0", "type": "a.b"}).status_code == 200
    lock = foreign_lock(path)
    lock.acquire()
    assert generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code == 503
    assert calls == ["evt_0"]
    lock.release()
    assert generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code == 200
    assert calls == ["evt_0", "evt_1"]


def test_app_answers_503_while_a_stopped_worker_holds_the_writers_lock(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """A worker stopped mid-write (SIGSTOP, a frozen cgroup) keeps its flock; the others must not hang."""
    path = tmp_path / "frozen.sqlite3"
    calls: list[str] = []
    app = _counting_app(make_app, f"sqlite:///{path}?timeout=0.2", calls)
    client = app.test_client()
    assert generic_post(client, {"id": "evt_0", "type": "a.b"}).status_code == 200
    ctx = multiprocessing.get_context("fork")
    holding = ctx.Event()

    def stopped_worker() -> None:
        fcntl.flock(os.open(f"{path}.lock", os.O_RDWR), fcntl.LOCK_EX)  # as a worker mid-write holds it
        holding.set()
        os.kill(os.getpid(), signal.SIGSTOP)

    child = ctx.Process(target=stopped_worker, daemon=True)
    child.start()
    statuses: list[int] = []
    try:
        assert holding.wait(30)
        post = threading.Thread(
            target=lambda: statuses.append(generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code)
        )
        post.start()
        post.join(10)
        assert not post.is_alive(), "the delivery waited for the stopped worker"
    finally:
        child.kill()  # a stopped process dies of SIGKILL too, and its flock goes with it
        child.join(30)
    assert statuses == [503]
    assert generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code == 200
    assert calls == ["evt_0", "evt_1"]


@pytest.mark.parametrize(
    ("column", "state", "damaged"),
    [
        ("reply", "done", "not json"),
        ("reply", "done", '{"v": 2, "code": 200}'),  # a format this version does not read
        ("handlers", "free", '["a", "b"]'),
    ],
)
def test_a_record_that_cannot_be_read_is_unavailable_not_a_500(
    make_app: Callable[..., Flask],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    column: str,
    state: str,
    damaged: str,
) -> None:
    """A damaged row, or one a newer version wrote: 503 and an error naming it, no traceback
    page, no handler run; answered as before once the row is put right."""
    path = tmp_path / "hooks.sqlite3"
    calls: list[str] = []
    app = _counting_app(make_app, f"sqlite:///{path}", calls)
    client = app.test_client()
    assert generic_post(client, {"id": "evt_1", "type": "a.b"}).status_code == 200
    with sqlite3.connect(path) as conn:
        good = conn.execute(f"SELECT {column}, state FROM hooks_deliveries").fetchone()
        conn.execute(f"UPDATE hooks_deliveries SET {column} = ?, state = ?", (damaged, state))
    conn.close()
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        down = generic_post(client, {"id": "evt_1", "type": "a.b"})
    assert (down.status_code, down.json) == (503, {"status": "unavailable", "reason": "store unavailable"})
    assert "Retry-After" in down.headers
    assert any(
        r.levelno == logging.ERROR and "cannot be read" in r.getMessage() for r in caplog.records
    )
    assert calls == ["evt_1"]
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE hooks_deliveries SET {column} = ?, state = ?", good)
    conn.close()
    assert generic_post(client, {"id": "evt_1", "type": "a.b"}).json == {"status": "duplicate"}
    assert calls == ["evt_1"]


@pytest.mark.parametrize("reason", ["not a database", "File exists"])
def test_a_store_that_cannot_be_opened_is_unavailable_and_says_why(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture, reason: str
) -> None:
    """A file that is no SQLite database at the path, or a directory that is a file: the
    error log names the file and why, the sender gets a 503 without it."""
    (tmp_path / "file").write_bytes(b"not a database" * 100)
    target = tmp_path / "file" if reason == "not a database" else tmp_path / "file" / "hooks.sqlite3"
    calls: list[str] = []
    app = _counting_app(make_app, f"sqlite:///{target}", calls)
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        down = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert (down.status_code, "Retry-After" in down.headers, calls) == (503, True, [])
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert str(target) in error.getMessage() and reason in error.getMessage()
    assert reason not in down.get_data(as_text=True)


def test_a_table_that_refuses_the_new_row_is_unavailable_not_a_500(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file a newer version wrote, whose deliveries table has a NOT NULL column this one does
    not fill: ``INSERT OR IGNORE`` dropped the row without a word, the claim then found no
    record and raised a TypeError (a 500); the constraint's error is a 503 that names it."""
    path = tmp_path / "hooks.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE hooks_deliveries (ns TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,"
            " token TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0, expires_at REAL NOT NULL,"
            " handlers TEXT NOT NULL DEFAULT '{}', reply TEXT, outcome TEXT NOT NULL DEFAULT '',"
            " shard INTEGER NOT NULL, PRIMARY KEY (id, ns)) WITHOUT ROWID"
        )
    db.close()
    calls: list[str] = []
    app = _counting_app(make_app, f"sqlite:///{path}", calls)
    with caplog.at_level(logging.WARNING, "flask_hooks"):
        down = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert (down.status_code, "Retry-After" in down.headers, calls) == (503, True, [])
    assert "shard" in caplog.text and "shard" not in down.get_data(as_text=True)


def test_redis_at_maxclients_recovers_once_idle_connections_let_go(private_redis: RedisServer) -> None:
    """After a burst at ``maxclients``, a connection that failed to connect went back on top
    of the pool, over the live ones: each delivery took it, and failed to connect because
    the pool's own idle connections held every slot, until some other client left."""
    store = RedisStore(private_redis.url)
    admin = redis.Redis.from_url(private_redis.url)
    try:
        store.claim("ns", "evt_0", now=T0, lease=30, ttl=60)  # the server checked, a connection made
        pool: Any = store.client.connection_pool
        held = [pool.get_connection() for _ in range(3)]  # as a burst's three requests hold them
        admin.config_set("maxclients", 3)  # the admin and two of the store's: full
        held[2].disconnect()  # the third lost its connection; it goes back to the pool last
        for conn in held:
            pool.release(conn)
        answers = []
        for i in range(1, 4):
            try:
                answers.append(store.claim("ns", f"evt_{i}", now=T0, lease=30, ttl=60).state)
            except StoreUnavailable:
                answers.append("503")
        assert answers[1:] == ["new", "new"]
    finally:
        admin.close()
        store.close()
