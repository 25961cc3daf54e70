"""``SqlStore`` on PostgreSQL (and SQLite through SQLAlchemy) as an unlucky production runs it:
engines in autocommit, handlers that end their own transaction. Each failed before its fix."""

from __future__ import annotations

import gc
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_hooks import ConfigError, Event, Hooks
from flask_hooks.core.errors import LeaseLost
from flask_hooks.core.store import Reply
from flask_hooks.stores.sql import SqlStore, connection
from tests.conftest import generic_post
from tests.postgres import pg_url, postgres  # noqa: F401 - fixtures
from tests.stores.test_sql import make_db

T0 = 1_700_000_000.0
LEASE, TTL = 30.0, 3600.0
NS = "app:hooks"
REPLY = Reply(200, b'{"booked": true}')
SECRET = "whsec-hostile-test"

app_metadata = sa.MetaData()
booked = sa.Table("booked", app_metadata, sa.Column("event", sa.Text, nullable=False))


class Boom(Exception):
    pass


def rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(booked.c.event)).scalars())


def book(event: str, then: Callable[[], None] = lambda: None) -> Callable[[], Reply]:
    def run() -> Reply:
        connection().execute(booked.insert().values(event=event))
        then()
        return REPLY

    return run


# An engine in autocommit --------------------------------------------------------------------


@pytest.fixture(params=["create_engine", "execution_options"])
def autocommit_engine(request: pytest.FixtureRequest, pg_url: str) -> Iterator[sa.Engine]:  # noqa: F811
    """``create_engine(isolation_level="AUTOCOMMIT")``, or an engine derived in autocommit."""
    if request.param == "create_engine":
        engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        base = engine
    else:
        base = sa.create_engine(pg_url)
        engine = base.execution_options(isolation_level="AUTOCOMMIT")
    app_metadata.create_all(engine)
    try:
        yield engine
    finally:
        base.dispose()


def test_an_autocommit_engine_still_rolls_back_an_atomic_handler_whose_lease_was_lost(
    autocommit_engine: sa.Engine,
) -> None:
    """In autocommit each statement committed by itself: the handler's row was in the table
    though its mark found the claim taken over (LeaseLost), and the new owner wrote it again."""
    store = SqlStore(autocommit_engine)
    old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    new = store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)
    with pytest.raises(LeaseLost):
        store.atomic(NS, "evt_1", old.token, "billing.book", book("old"), now=T0 + LEASE + 2)
    assert rows(autocommit_engine) == []

    def failing() -> None:
        raise Boom()

    with pytest.raises(Boom):
        store.atomic(NS, "evt_1", new.token, "billing.book", book("failed", failing), now=T0 + LEASE + 2)
    assert rows(autocommit_engine) == []
    assert store.atomic(NS, "evt_1", new.token, "billing.book", book("new"), now=T0 + LEASE + 2) == REPLY
    assert rows(autocommit_engine) == ["new"]
    with autocommit_engine.connect() as conn:  # the engine's connections are as the app made them
        assert conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]


def test_an_autocommit_engine_keeps_the_claim_locked_until_its_transaction_ends(
    autocommit_engine: sa.Engine,
) -> None:
    """A claim reads an expired row ``FOR UPDATE`` and then takes it: in autocommit the lock
    ended with the read, so two workers could both take it over. It must be one transaction."""
    store = SqlStore(autocommit_engine)
    store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    seen: list[bool] = []
    read = sa.select(sa.literal(1)).select_from(sa.table("flask_hooks_deliveries")).with_for_update()

    def work(cursor: Any) -> None:
        cursor.begin()
        cursor.row(read, {})
        # Another connection tries the row this transaction has read FOR UPDATE.
        with autocommit_engine.connect() as other:
            other.execute(sa.text("SET lock_timeout = '50ms'"))
            try:
                other.execute(sa.text("SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"))
            except sa.exc.OperationalError:
                seen.append(True)  # locked: the claim's read and update are one transaction
            else:
                seen.append(False)

    store._write(work)
    assert seen == [True]


# Flask-SQLAlchemy's db in autocommit --------------------------------------------------------


@pytest.fixture
def autocommit_db(pg_url: str, tmp_path: Path) -> Iterator[tuple[Flask, SQLAlchemy, Any]]:  # noqa: F811
    app = Flask("sql_hostile", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=pg_url, HOOKS_SECRET=SECRET)
    db, Booking = make_db(app, engine_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield app, db, Booking
    finally:
        with app.app_context():
            db.engine.dispose()


def test_db_session_in_autocommit_commits_an_atomic_handler_with_its_mark_or_not_at_all(
    autocommit_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    app, db, Booking = autocommit_db
    hooks = Hooks(app, store=SqlStore(db))
    failures = [Boom("first attempt")]
    touch_first: list[bool] = []

    @app.before_request
    def load_user() -> None:
        if touch_first:
            db.session.execute(sa.text("SELECT 1"))  # a request that used db.session before

    @hooks.on("order", atomic=True)
    def book_order(event: Event) -> None:
        db.session.add(Booking(event=event.id))
        db.session.flush()
        if failures:
            raise failures.pop()

    client = app.test_client()
    delivery = {"id": "evt_1", "type": "order.paid"}
    assert generic_post(client, delivery, secret=SECRET).status_code == 500
    with app.app_context():
        assert db.session.scalars(sa.select(Booking.event)).all() == []  # its flushed row rolled back
    assert generic_post(client, delivery, secret=SECRET).status_code == 200
    with app.app_context():
        assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]
    # In autocommit and in use already, the session cannot be made one transaction: refused.
    touch_first.append(True)
    answer = generic_post(client, {"id": "evt_2", "type": "order.paid"}, secret=SECRET)
    assert answer.status_code == 500 and b"autocommit" not in answer.data
    with app.app_context():
        assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]


# A handler that rolls back its own transaction ------------------------------------------------


@pytest.fixture(params=["engine", "url", "sqlite"])
def store_and_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SqlStore, sa.Engine]]:
    if request.param == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path / 'app.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    app_metadata.create_all(engine)
    store = SqlStore(url if request.param == "url" else engine)
    try:
        yield store, engine
    finally:
        store.close()
        engine.dispose()


def test_a_handler_that_rolls_back_its_connection_still_has_its_success_recorded(
    store_and_engine: tuple[SqlStore, sa.Engine],
) -> None:
    """``except IntegrityError: connection().rollback(); return`` ("already done"): the mark
    ran outside any transaction SQLAlchemy knew of, its commit committed nothing, and the
    handler ran again when a later handler's failure made the sender retry."""
    store, engine = store_and_engine
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    undone = book("undone", lambda: connection().rollback())
    assert store.atomic(NS, "evt_1", claim.token, "undone", undone, now=T0) == REPLY

    def rolled_back_then_wrote() -> None:
        connection().rollback()
        connection().execute(booked.insert().values(event="after"))

    assert store.atomic(NS, "evt_1", claim.token, "rewrote", book("before", rolled_back_then_wrote), now=T0)
    store.release(NS, "evt_1", claim.token, now=T0 + 1)  # a later handler failed
    retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
    assert set(retry.handlers) == {"undone", "rewrote"}  # neither runs again
    assert rows(engine) == ["after"]


# Each Flask-SQLAlchemy db of a process ---------------------------------------------------------


def committing_after_a_rollback(db: SQLAlchemy) -> Callable[[], Reply]:
    def run() -> Reply:
        db.session.rollback()
        db.session.execute(booked.insert().values(event="evt_1"))
        db.session.commit()
        return REPLY

    return run


def test_a_commit_after_a_rollback_is_refused_for_every_db_a_process_makes(tmp_path: Path) -> None:
    """Each ``SQLAlchemy()`` has a session class of its own, and an app factory (a test suite)
    makes one per app. The refusal's listener was registered once per class, as far as
    ``sa.event.contains`` could tell: it goes by ``id()``, so a class made where a collected
    one had been looked watched, and a commit after a rollback (a new connection, which only
    the session's listener sees) committed the handler's writes without its mark."""
    committed: list[int] = []
    for n in range(12):
        app = Flask(f"factory_{n}")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite+pysqlite:///{tmp_path / f'app{n}.sqlite3'}"
        db = SQLAlchemy()
        db.init_app(app)
        store = SqlStore(db)
        with app.app_context():
            booked.create(db.engine)
            claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
            run = committing_after_a_rollback(db)
            with pytest.raises(RuntimeError, match="must not commit"):
                store.atomic(NS, "evt_1", claim.token, "billing.book", run, now=T0)
            db.session.remove()
            committed.extend([n] * len(db.session.scalars(sa.select(booked.c.event)).all()))
            db.session.remove()
            db.engine.dispose()
        del app, db, store
        gc.collect()  # the session class goes: the next one may be made at its address
    assert committed == []


# A network partition mid-statement -------------------------------------------------------------


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
def test_a_url_stores_connections_give_up_on_a_statement_the_server_never_acknowledges(
    pg_url: str,  # noqa: F811
) -> None:
    """A partition (the host gone, a failover) while a statement is on its way: no byte comes
    back, the server's ``statement_timeout`` never runs, and keepalives wait for an idle
    connection, so the claim hung for TCP's retransmissions, about 15 minutes (seen through
    a veth whose peer was set down). The kernel now gives up after the store's timeout."""
    store = SqlStore(pg_url, timeout=2.0)
    try:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)  # a held connection
        with store.engine.connect() as conn:  # and one of the pool's
            raws = [held.driver for held in store._held._idle] if store._held else []
            raws.append(conn.connection.dbapi_connection)
            for raw in raws:
                sock = socket.socket(fileno=os.dup(raw.fileno()))  # type: ignore[union-attr]
                try:
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2000
                finally:
                    sock.close()
        assert len(raws) == 2
    finally:
        store.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
def test_a_libpq_before_12_gets_no_tcp_user_timeout(
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libpq 11 and older know no ``tcp_user_timeout``: with it, every connection is refused."""
    from flask_hooks.stores import _sql_engine

    monkeypatch.setattr(_sql_engine, "_libpq_version", lambda driver: 110000)
    store = SqlStore(pg_url, timeout=2.0)
    try:
        with store.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            sock = socket.socket(fileno=os.dup(raw.fileno()))  # type: ignore[union-attr]
            try:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0
            finally:
                sock.close()
    finally:
        store.close()


# An engine whose tables are in another schema ------------------------------------------------


TENANTS = ("tenant_a", "tenant_b")


def test_an_engine_with_a_schema_translate_map_writes_where_it_reads(pg_url: str) -> None:  # noqa: F811
    """A tenant's engine, ``execution_options(schema_translate_map={None: "tenant_a"})``: the
    tables were made in its schema, and SQLAlchemy read there, but the statements the store
    renders itself ran unqualified, on the ``search_path``: 503 for every delivery, or, with
    the default schema's tables there (another tenant's), its claims and completions went
    into those, so one tenant's delivery was another's duplicate."""
    base = sa.create_engine(pg_url)
    try:
        with base.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA tenant_a"))
            conn.execute(sa.text("CREATE SCHEMA tenant_b"))
        public = SqlStore(base)
        public.claim(NS, "evt_0", now=T0, lease=LEASE, ttl=TTL)  # the default schema has the tables too
        a, b = (SqlStore(base.execution_options(schema_translate_map={None: s})) for s in TENANTS)
        claim = a.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert claim.state == "new"
        assert a.atomic(NS, "evt_1", claim.token, "billing.book", lambda: REPLY, now=T0) == REPLY
        a.complete(NS, "evt_1", claim.token, outcome="received", reply=REPLY, now=T0, ttl=TTL)
        assert a.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
        assert b.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "new"  # another tenant's
        assert public.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "new"
        with base.connect() as conn:
            count = "SELECT count(*) FROM {}.flask_hooks_deliveries"
            counts = {s: conn.execute(sa.text(count.format(s))).scalar() for s in ("public", *TENANTS)}
        assert counts == {"public": 2, "tenant_a": 1, "tenant_b": 1}
    finally:
        base.dispose()


# A session that does not autobegin -----------------------------------------------------------


def test_atomic_handlers_run_on_a_db_whose_session_does_not_autobegin(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``SQLAlchemy(session_options={"autobegin": False})``: the store asked the session for its
    connection, which needs a transaction begun, so every atomic delivery was a 500."""

    app = Flask("sql_no_autobegin", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=pg_url, HOOKS_SECRET=SECRET)
    db, Booking = make_db(app, session_options={"autobegin": False})
    hooks = Hooks(app, store=SqlStore(db))
    failures = [Boom("first attempt")]

    @hooks.on("order", atomic=True)
    def book_order(event: Event) -> dict[str, str]:
        db.session.add(Booking(event=event.id))
        db.session.flush()
        if failures:
            raise failures.pop()
        return {"booked": event.id}

    try:
        client = app.test_client()
        delivery = {"id": "evt_1", "type": "order.paid"}
        assert generic_post(client, delivery, secret=SECRET).status_code == 500
        assert generic_post(client, delivery, secret=SECRET).json == {"booked": "evt_1"}
        assert generic_post(client, delivery, secret=SECRET).json == {"booked": "evt_1"}  # a duplicate
        with app.app_context(), db.session.begin():
            assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]
    finally:
        with app.app_context():
            db.engine.dispose()


# ?timeout= in a PostgreSQL store URL -----------------------------------------------------------


def test_a_postgres_store_url_sets_the_stores_timeout_with_its_query(pg_url: str) -> None:  # noqa: F811
    """``HOOKS_STORE`` is a URL, and ``sqlite:///hooks.db?timeout=2`` sets the embedded store's
    timeout. In a PostgreSQL URL, ``timeout`` went to libpq, which has no such option: every
    connection was refused, so every delivery was a 503, for ever."""
    app = Flask("sql_url_timeout")
    app.config.update(HOOKS_SECRET=SECRET, HOOKS_STORE=f"{pg_url}?timeout=2")
    hooks = Hooks(app)

    @hooks.on("order")
    def book_order(event: Event) -> None:
        pass

    store = hooks.receiver(app).store
    try:
        assert generic_post(app.test_client(), {"id": "evt_1", "type": "order.paid"}, secret=SECRET).json == {
            "status": "received"
        }
        assert isinstance(store, SqlStore) and store.timeout == 2.0
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "2s"
    finally:
        store.close()
    with pytest.raises(ConfigError, match="timeout must be a positive number of seconds, not 'soon'"):
        Hooks(Flask("sql_url_bad_timeout"), secret=SECRET, store=f"{pg_url}?timeout=soon")


def test_an_app_per_test_on_a_sql_store_url_leaves_no_connection_to_the_garbage_collector(
    pg_url: str,  # noqa: F811
) -> None:
    """A store built from a URL owns its engine: dropped without ``close()`` (an app per test),
    it left its connections to the garbage collector, which warns for each one (psycopg's
    ResourceWarning), an error under ``pytest -W error``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for i in range(5):
            hooks = Hooks()
            hooks.on("*")(lambda event: None)
            app = Flask(f"per_test_{i}")
            app.config.update(HOOKS_SECRET=SECRET, HOOKS_STORE=pg_url)
            hooks.init_app(app)
            response = generic_post(app.test_client(), {"id": f"evt_{i}", "type": "a.b"}, secret=SECRET)
            assert response.status_code == 200
            del response
            del hooks, app
            gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
