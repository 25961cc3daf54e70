"""``SqlStore`` beyond the contracts: atomic handlers, Flask-SQLAlchemy, outages, the schema.

Every test that takes ``url`` runs on a real PostgreSQL (``tests/postgres.py``)
and on SQLite through SQLAlchemy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

from flask_hooks import Event, Hooks
from flask_hooks.core.errors import LeaseLost, StoreUnavailable
from flask_hooks.core.inbox import Kept
from flask_hooks.core.store import LogEntry, Reply
from flask_hooks.stores import _sql_engine, _sql_writes
from flask_hooks.stores.sql import SqlStore, connection, metadata
from tests.conftest import generic_post
from tests.postgres import PostgresServer, pg_url, postgres  # noqa: F401 - fixtures

T0 = 1_700_000_000.0
LEASE, TTL = 30.0, 3600.0
NS = "app:hooks"
REPLY = Reply(200, b'{"booked": true}')

#: The handler's own table, in the app's database beside the store's.
app_metadata = sa.MetaData()
booked = sa.Table("booked", app_metadata, sa.Column("event", sa.Text, nullable=False))


class Boom(Exception):
    pass


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.sqlite3'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    app_metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(booked.c.event)).scalars())


def book(event: str) -> Callable[[], Reply]:
    """An atomic handler body: a row in the app's table, through the store's transaction."""

    def run() -> Reply:
        connection().execute(booked.insert().values(event=event))
        return REPLY

    return run


# atomic() with an Engine --------------------------------------------------------------


def test_atomic_commits_the_handlers_rows_with_its_mark(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    assert store.atomic(NS, "evt_1", claim.token, "billing.book", book("evt_1"), now=T0) == REPLY
    assert rows(engine) == ["evt_1"]
    store.release(NS, "evt_1", claim.token, now=T0 + 1)  # a later handler failed
    retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
    assert dict(retry.handlers) == {"billing.book": REPLY}  # so the retry skips it


@pytest.mark.parametrize("writes", ["nothing", "through the driver's cursor"])
def test_atomic_commits_its_mark_whatever_the_handler_writes_through(engine: sa.Engine, writes: str) -> None:
    """The transaction is begun by the store: a handler that never calls ``execute`` (it writes
    nothing, or through the DBAPI cursor) must not have its mark, or its writes, rolled back."""
    store = SqlStore(engine)
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

    def run() -> Reply:
        if writes != "nothing":
            marker = "?" if engine.name == "sqlite" else "%s"
            raw = connection().connection.cursor()  # the driver's, under SQLAlchemy
            raw.execute(f"INSERT INTO booked (event) VALUES ({marker})", ("evt_1",))
        return REPLY

    assert store.atomic(NS, "evt_1", claim.token, "billing.book", run, now=T0) == REPLY
    assert rows(engine) == ([] if writes == "nothing" else ["evt_1"])
    store.release(NS, "evt_1", claim.token, now=T0 + 1)  # a later handler failed
    retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
    assert dict(retry.handlers) == {"billing.book": REPLY}  # so the retry skips it


def test_atomic_rolls_back_the_rows_and_the_mark_when_the_handler_raises(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

    def failing() -> Reply:
        book("evt_1")()
        raise Boom("after the write")

    with pytest.raises(Boom):
        store.atomic(NS, "evt_1", claim.token, "billing.book", failing, now=T0)
    assert rows(engine) == []
    store.release(NS, "evt_1", claim.token, now=T0 + 1)
    retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
    assert dict(retry.handlers) == {}
    assert store.atomic(NS, "evt_1", retry.token, "billing.book", book("evt_1"), now=T0 + 2) == REPLY
    assert rows(engine) == ["evt_1"]


def test_atomic_rolls_back_when_the_claim_was_taken_over_before_it_ran(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    new = store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)  # the lease ran out
    with pytest.raises(LeaseLost):
        store.atomic(NS, "evt_1", old.token, "billing.book", book("old"), now=T0 + LEASE + 2)
    store.atomic(NS, "evt_1", new.token, "billing.book", book("new"), now=T0 + LEASE + 3)
    assert rows(engine) == ["new"]


def test_atomic_rolls_back_when_the_claim_is_taken_over_while_it_runs(pg_url: str) -> None:  # noqa: F811
    """PostgreSQL: the takeover commits while the first handler's transaction is open."""
    engine = sa.create_engine(pg_url)
    app_metadata.create_all(engine)
    store = SqlStore(engine)
    try:
        old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        taken: list[str] = []

        def slow() -> Reply:
            book("old")()
            # Meanwhile the lease runs out; another worker claims and handles the delivery.
            new = store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)
            assert new.state == "new"
            store.atomic(NS, "evt_1", new.token, "billing.book", book("new"), now=T0 + LEASE + 2)
            taken.append(new.token)
            return REPLY

        with pytest.raises(LeaseLost):
            store.atomic(NS, "evt_1", old.token, "billing.book", slow, now=T0)
        assert rows(engine) == ["new"]  # exactly one commit of the handler's rows
        store.complete(NS, "evt_1", taken[0], outcome="received", reply=None, now=T0 + LEASE + 3, ttl=TTL)
    finally:
        engine.dispose()


def test_atomic_rolls_back_when_its_mark_cannot_be_written(pg_url: str) -> None:  # noqa: F811
    """The mark waits for a row another program holds: a bounded wait, a 503, and the
    handler's rows roll back with it."""
    engine = sa.create_engine(pg_url)
    app_metadata.create_all(engine)
    store = SqlStore(engine, timeout=0.3)
    try:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        with engine.connect() as foreign:
            foreign.execute(sa.text("SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"))
            with pytest.raises(StoreUnavailable):
                store.atomic(NS, "evt_1", claim.token, "billing.book", book("evt_1"), now=T0)
            foreign.rollback()
        assert rows(engine) == []
        assert store.atomic(NS, "evt_1", claim.token, "billing.book", book("evt_1"), now=T0) == REPLY
        assert rows(engine) == ["evt_1"]
    finally:
        engine.dispose()


def test_connection_outside_an_atomic_handler_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="atomic=True"):
        connection()


# Flask-SQLAlchemy: db.session is the transaction ----------------------------------------


def make_db(app: Flask, **options: Any) -> tuple[SQLAlchemy, Any]:
    """A ``db`` on ``app`` with a ``bookings`` table; ``options`` for ``SQLAlchemy()``
    (by default, ``engine_options={"pool_pre_ping": True}``)."""

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base, **(options or {"engine_options": {"pool_pre_ping": True}}))

    class Booking(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bookings"
        n: Mapped[int] = mapped_column(primary_key=True)
        event: Mapped[str]

    db.init_app(app)
    with app.app_context():
        db.create_all()
    return db, Booking


@pytest.fixture
def flask_db(url: str, tmp_path: Path) -> Iterator[tuple[Flask, SQLAlchemy, Any]]:
    app = Flask("sql_test", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=url, TESTING=True)
    db, model = make_db(app)
    try:
        yield app, db, model
    finally:
        with app.app_context():
            db.engine.dispose()


def test_db_session_writes_commit_with_the_mark_or_not_at_all(
    flask_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    app, db, Booking = flask_db
    store = SqlStore(db)
    with app.app_context():
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def failing() -> Reply:
            db.session.add(Booking(event="evt_1"))
            db.session.flush()
            raise Boom()

        with pytest.raises(Boom):
            store.atomic(NS, "evt_1", claim.token, "billing.book", failing, now=T0)
        assert db.session.scalars(sa.select(Booking.event)).all() == []  # the session is usable again

        def booking() -> Reply:
            db.session.add(Booking(event="evt_1"))  # flushed by the store, committed with the mark
            assert connection() is db.session.connection()
            return REPLY

        assert store.atomic(NS, "evt_1", claim.token, "billing.book", booking, now=T0) == REPLY
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=REPLY, now=T0, ttl=TTL)
    with app.app_context():
        assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"


def test_db_session_writes_roll_back_when_the_lease_was_lost(flask_db: tuple[Flask, SQLAlchemy, Any]) -> None:
    app, db, Booking = flask_db
    store = SqlStore(db)
    with app.app_context():
        old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)

        def booking() -> Reply:
            db.session.add(Booking(event="old"))
            return REPLY

        with pytest.raises(LeaseLost):
            store.atomic(NS, "evt_1", old.token, "billing.book", booking, now=T0 + LEASE + 2)
        assert db.session.scalars(sa.select(Booking.event)).all() == []


def test_db_store_renews_from_a_thread_without_an_app_context(
    flask_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    """The lease keeper renews from its own thread, where ``db.engine`` cannot be read: a
    receiver's leases renew inside its app's context."""
    from flask_hooks.extension import AppLeases

    app, db, _ = flask_db
    store = SqlStore(db)
    with app.app_context():
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    errors: list[BaseException] = []
    leases = AppLeases(app, store)

    def renew() -> None:
        try:
            leases.renew(NS, "evt_1", claim.token, now=T0 + 20, lease=LEASE)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=renew)
    thread.start()
    thread.join(10)
    assert errors == []
    with app.app_context():
        assert store.claim(NS, "evt_1", now=T0 + LEASE + 5, lease=LEASE, ttl=TTL).state == "inflight"


def test_atomic_handlers_through_the_receiver(flask_db: tuple[Flask, SQLAlchemy, Any]) -> None:
    app, db, Booking = flask_db
    app.config["HOOKS_SECRET"] = "whsec-test-secret"
    hooks = Hooks(store=SqlStore(db))
    failures = [Boom("first attempt")]

    @hooks.on("order", atomic=True)
    def book_order(event: Event) -> dict[str, str]:
        db.session.add(Booking(event=event.id))
        if failures:
            raise failures.pop()
        return {"booked": event.id}

    hooks.init_app(app)
    client = app.test_client()
    delivery = {"id": "evt_1", "type": "order.paid"}
    assert generic_post(client, delivery).status_code == 500
    first = generic_post(client, delivery)
    assert (first.status_code, first.json) == (200, {"booked": "evt_1"})
    assert generic_post(client, delivery).json == {"booked": "evt_1"}  # the recorded reply
    with app.app_context():
        assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]


# Races, outages and bounded waits --------------------------------------------------------


def test_concurrent_claims_give_each_delivery_to_one_caller(url: str) -> None:
    store = SqlStore(url)
    ids = [f"evt_{n}" for n in range(40)]
    try:
        store.deliveries(NS)  # create the tables first: the race is for the rows

        def claim_all(_: int) -> list[str]:
            return [id for id in ids if store.claim(NS, id, now=T0, lease=LEASE, ttl=TTL).state == "new"]

        with ThreadPoolExecutor(6) as pool:
            won = [id for ids_won in pool.map(claim_all, range(6)) for id in ids_won]
        assert sorted(won) == sorted(ids)
    finally:
        store.close()


def test_postgres_stopped_is_unavailable_then_the_same_store_recovers(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    store = SqlStore(pg_url, timeout=1.0)
    try:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        postgres.stop()
        try:  # every call ends in StoreUnavailable (the store's own timeouts bound the wait)
            for call in (
                lambda: store.claim(NS, "evt_2", now=T0, lease=LEASE, ttl=TTL),
                lambda: store.complete(
                    NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL
                ),
                lambda: store.release(NS, "evt_1", claim.token, now=T0),
                lambda: store.atomic(NS, "evt_1", claim.token, "h", lambda: None, now=T0),
                lambda: store.deliveries(NS),
                lambda: store.query(NS, now=T0),
            ):
                with pytest.raises(StoreUnavailable):
                    call()
        finally:
            postgres.start()
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0 + 1, ttl=TTL)
        assert store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL).state == "done"
        assert store.claim(NS, "evt_2", now=T0 + 2, lease=LEASE, ttl=TTL).state == "new"
    finally:
        store.close()


def test_after_a_restart_an_engine_given_fails_no_claim(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    """The store's statements run on the driver's cursor: a lost connection there was
    invalidated alone, so after a restart each connection pooled before it failed in turn (a
    503 per connection, up to the pool's size). SQLAlchemy's own path renews the whole pool,
    and the claim that found its connection lost runs again on a new one."""
    engine = sa.create_engine(pg_url, pool_size=4, max_overflow=0)  # no pool_pre_ping
    store = SqlStore(engine)
    try:
        store.claim(NS, "evt_0", now=T0, lease=LEASE, ttl=TTL)
        pooled = [engine.connect() for _ in range(4)]
        for conn in pooled:
            conn.close()
        postgres.stop()
        postgres.start()
        failed = 0
        for n in range(1, 7):
            try:
                store.claim(NS, f"evt_{n}", now=T0, lease=LEASE, ttl=TTL)
            except StoreUnavailable:
                failed += 1
        assert failed == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("given", [False, True], ids=["url", "engine"])
def test_a_row_locked_elsewhere_is_a_bounded_wait_on_postgres(pg_url: str, given: bool) -> None:  # noqa: F811
    engine = sa.create_engine(pg_url)
    store = SqlStore(engine, timeout=0.3) if given else SqlStore(pg_url, timeout=0.3)
    try:
        store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
        with engine.connect() as foreign:  # another program holds the row
            foreign.execute(sa.text("SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"))
            with pytest.raises(StoreUnavailable):  # lock_timeout: a 503, not a wait for the holder
                store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL)
            foreign.rollback()
        assert store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL).state == "new"
    finally:
        store.close()
        engine.dispose()


def refused_while_held(engine: sa.Engine, hold: str, call: Callable[[], object], **params: Any) -> bool:
    """Whether ``call``, made while another connection holds what ``hold`` locks, ended in
    :class:`StoreUnavailable` before the holder let go (a bounded wait), in another thread."""
    outcomes: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcomes.append(None)
        except StoreUnavailable as exc:
            outcomes.append(exc)

    with engine.connect() as foreign:  # another program holds it
        foreign.execute(sa.text(hold), params)
        thread = threading.Thread(target=run)
        thread.start()
        for _ in range(200):  # bounded in count: a wait for the holder outlasts them all
            thread.join(0.05)
            if not thread.is_alive():
                break
        foreign.rollback()
    thread.join()
    return len(outcomes) == 1 and isinstance(outcomes[0], StoreUnavailable)


@pytest.mark.parametrize("given", [False, True], ids=["url", "engine"])
def test_tables_being_created_elsewhere_are_a_bounded_wait_on_postgres(
    pg_url: str,  # noqa: F811
    given: bool,
) -> None:
    """Another worker stuck creating the tables (frozen, or waiting itself) holds the lock that
    serialises their creation: first use waited for it without bound on an engine given, so
    every request of every other worker hung. Now a 503 after ``timeout``, then it recovers."""
    from flask_hooks.stores.sql import _SCHEMA_LOCK

    engine = sa.create_engine(pg_url)
    store = SqlStore(engine, timeout=0.3) if given else SqlStore(pg_url, timeout=0.3)
    try:
        hold = "SELECT pg_advisory_xact_lock(:k)"
        assert refused_while_held(
            engine, hold, lambda: store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL), k=_SCHEMA_LOCK
        )
        assert store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL).state == "new"
    finally:
        store.close()
        engine.dispose()


def test_a_url_with_its_own_options_still_bounds_lock_waits_on_postgres(pg_url: str) -> None:  # noqa: F811
    """``?options=-csearch_path=hooks`` (the tables in a schema of their own) replaced the
    options that bound lock waits and statements: a row locked elsewhere was a wait without
    bound. Both apply now, and the URL's own settings win."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA hooks"))
    store = SqlStore(f"{pg_url}?options=-csearch_path%3Dhooks%20-cstatement_timeout%3D7s", timeout=0.3)
    try:
        store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "7s"
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "300ms"
        hold = "SELECT 1 FROM hooks.flask_hooks_deliveries FOR UPDATE"
        assert refused_while_held(
            engine, hold, lambda: store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL)
        )
        assert store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL).state == "new"
    finally:
        store.close()
        engine.dispose()


def test_a_url_store_commits_durably_at_read_committed_whatever_the_databases_defaults(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    """A DBA's ``synchronous_commit = off`` (a common tuning) let a 200 go out before the
    completion was on disk: after a crash the delivery was in flight again and its handler ran
    twice. ``default_transaction_isolation = serializable`` failed the store's transactions, a
    slow atomic handler's at every retry. The store's own engine pins both; the URL's options win."""
    database = sa.make_url(pg_url).database
    postgres._admin(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    postgres._admin(f'ALTER DATABASE "{database}" SET default_transaction_isolation = serializable')
    for url, isolation in (
        (pg_url, "read committed"),
        (f"{pg_url}?options=-cdefault_transaction_isolation%3Drepeatable%5C%20read", "repeatable read"),
    ):
        store = SqlStore(url, timeout=1)
        try:
            with store.engine.connect() as conn:
                assert conn.execute(sa.text("SHOW synchronous_commit")).scalar() == "on"
                assert conn.execute(sa.text("SHOW default_transaction_isolation")).scalar() == isolation
        finally:
            store.close()


def test_an_engine_given_commits_the_stores_transactions_durably(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    """On an app's engine, a database's ``synchronous_commit = off`` is the app's choice, but
    not for the store's transactions (an atomic handler's included): those set it back, for
    themselves only, as they bound their lock waits."""
    database = sa.make_url(pg_url).database
    postgres._admin(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    engine = sa.create_engine(pg_url)
    store = SqlStore(engine, timeout=1)
    show = sa.text("SELECT current_setting('synchronous_commit'), current_setting('lock_timeout')")
    try:
        assert store._write(lambda cursor: cursor.row(show, {})) == ("on", "1s")
        with engine.connect() as conn:  # the app's own transactions keep the database's setting
            assert conn.execute(show).one() == ("off", "0")
    finally:
        store.close()
        engine.dispose()


@pytest.mark.parametrize("given", [False, True], ids=["url", "engine"])
def test_a_delivery_log_that_refuses_its_line_does_not_fail_the_completion(
    pg_url: str,  # noqa: F811
    given: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log's table locked (VACUUM FULL, a migration): the completion and its line are one
    statement, so the handler's record failed with it, a 503, and the handler ran again at
    every retry. The record stands without its line now; the attempt is still kept."""
    engine = sa.create_engine(pg_url)
    store = SqlStore(engine, timeout=0.3) if given else SqlStore(pg_url, timeout=0.3)
    try:
        keep = Kept(type="order.paid", body=b"{}", headers=(), received_at=T0, secret_index=0, retention=TTL)
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=keep)
        line = LogEntry(id="evt_1", type="order.paid", status="received", code=200, received_at=T0)
        with engine.connect() as foreign, caplog.at_level(logging.WARNING, logger="flask_hooks"):
            foreign.execute(sa.text("LOCK TABLE flask_hooks_log IN ACCESS EXCLUSIVE MODE"))
            store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL,
                           entry=line)  # fmt: skip
            foreign.rollback()
        assert "delivery log refused evt_1's line: LockNotAvailable" in caplog.text
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
        kept = store.get(NS, "evt_1")
        assert kept is not None and [a.status for a in kept.attempts] == ["received"]
        assert store.deliveries(NS) == []
    finally:
        store.close()
        engine.dispose()


def test_a_delivery_row_locked_elsewhere_is_one_wait_at_the_completion(
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the log's own refusal is excused: any lock wait was taken for it, and tried again
    without the line, so a completion behind a row locked elsewhere waited twice its bound
    and, once the row was free, dropped its line blaming the log."""
    store = SqlStore(pg_url, timeout=0.3)
    engine = sa.create_engine(pg_url)
    finishes: list[bool] = []
    finish = _sql_writes.finish

    def counted(*args: Any, **kwargs: Any) -> int:
        finishes.append(kwargs.get("logged", True))
        return finish(*args, **kwargs)

    monkeypatch.setattr(_sql_writes, "finish", counted)
    try:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        line = LogEntry(id="evt_1", type="order.paid", status="received", code=200, received_at=T0)
        hold = "SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"
        with caplog.at_level(logging.WARNING, logger="flask_hooks"):
            assert refused_while_held(engine, hold, lambda: store.complete(
                NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL, entry=line
            ))  # fmt: skip
        assert finishes == [True]
        assert "delivery log refused" not in caplog.text
    finally:
        store.close()
        engine.dispose()


def test_a_url_whose_connect_options_do_not_reach_the_server_still_bounds_lock_waits(
    pg_url: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PgBouncer drops the connect options (``ignore_startup_parameters = options``): the
    store took its lock waits for bounded and never set ``lock_timeout``, so a row locked
    elsewhere was a wait without bound. Here the URL's own options undo the bound, as the
    pooler would: the store sees it and bounds its transactions itself."""
    with caplog.at_level(logging.WARNING, logger="flask_hooks"):
        store = SqlStore(f"{pg_url}?options=-clock_timeout%3D0%20-csynchronous_commit%3Doff", timeout=0.3)
        engine = sa.create_engine(pg_url)
        try:
            store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
            assert "connect options did not reach the server" in caplog.text
            hold = "SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"
            assert refused_while_held(
                engine, hold, lambda: store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL)
            )
            show = sa.text("SELECT current_setting('synchronous_commit')")
            assert store._write(lambda cursor: cursor.row(show, {})) == ("on",)
        finally:
            store.close()
            engine.dispose()


def test_a_url_store_behind_a_pooler_dropping_its_options_keeps_its_own_bound(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropped as PgBouncer's ``ignore_startup_parameters = options`` drops them, on a database
    with a ``lock_timeout`` of its own: the check took that minute for the store's bound. Nor
    did the pinned ``read committed`` arrive: under ``serializable`` the store's transactions
    failed to serialize, and a slow atomic handler failed at every retry."""
    database = sa.make_url(pg_url).database
    postgres._admin(f'ALTER DATABASE "{database}" SET lock_timeout = \'60s\'')
    postgres._admin(f'ALTER DATABASE "{database}" SET default_transaction_isolation = serializable')
    create = _sql_engine.sa.create_engine

    def dropping(url: Any, connect_args: dict[str, Any], **options: Any) -> sa.Engine:
        return create(url, connect_args={k: v for k, v in connect_args.items() if k != "options"}, **options)

    monkeypatch.setattr(_sql_engine.sa, "create_engine", dropping)
    store = SqlStore(pg_url, timeout=0.3)
    monkeypatch.setattr(_sql_engine.sa, "create_engine", create)
    engine = sa.create_engine(pg_url)
    try:
        store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
        hold = "SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"
        again = lambda: store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL)  # noqa: E731
        assert refused_while_held(engine, hold, again)
        level = sa.text("SELECT current_setting('transaction_isolation')")
        assert store._write(lambda cursor: cursor.row(level, {})) == ("read committed",)
    finally:
        store.close()
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_tables_of_an_older_schema_are_refused_before_any_claim(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
    backend: str,
) -> None:
    """``create_all`` looks for the tables only: with a column missing, the claim worked, the
    handler ran, its completion failed (a 503), and the handler ran again at every retry."""
    url = pg_url if backend == "postgresql" else f"sqlite+pysqlite:///{tmp_path / 'hooks.db'}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE flask_hooks_deliveries DROP COLUMN attempts"))
    store = SqlStore(engine, timeout=1)
    try:
        with pytest.raises(StoreUnavailable) as refused:
            store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert "lack flask_hooks_deliveries.attempts: migrate them" in str(refused.value.__cause__)
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM flask_hooks_deliveries")).scalar() == 0
    finally:
        store.close()
        engine.dispose()


def test_a_url_on_another_postgres_driver_still_bounds_lock_waits(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    """Only psycopg's connections get the store's lock_timeout in their connect options; on
    another driver (pg8000) a store built from a URL bounded nothing: a row locked elsewhere
    was a wait without bound. Its transactions bound their lock waits themselves now, and
    run at read committed on a serializable database."""
    pytest.importorskip("pg8000")
    database = sa.make_url(pg_url).database
    postgres._admin(f'ALTER DATABASE "{database}" SET default_transaction_isolation = serializable')
    store = SqlStore(pg_url.replace("+psycopg", "+pg8000"), timeout=0.3)
    engine = sa.create_engine(pg_url)
    try:
        store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
        hold = "SELECT 1 FROM flask_hooks_deliveries FOR UPDATE"
        assert refused_while_held(
            engine, hold, lambda: store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL)
        )
        assert store.claim(NS, "evt_1", now=T0 + 5, lease=1, ttl=TTL).state == "new"
        level = sa.text("SELECT current_setting('transaction_isolation')")
        assert tuple(store._write(lambda cursor: cursor.row(level, {}))) == ("read committed",)
    finally:
        store.close()
        engine.dispose()


def test_reads_of_tables_locked_elsewhere_are_a_bounded_wait_on_an_engine_given(pg_url: str) -> None:  # noqa: F811
    """A migration holding the store's table (``ALTER TABLE`` in a long transaction): the
    store's writes waited ``timeout`` on an engine given, but its reads (the inbox, the
    dashboard, the CLI) waited without bound. A 503 now, then they work again."""
    engine = sa.create_engine(pg_url)
    store = SqlStore(engine, timeout=0.3)
    try:
        store.claim(NS, "evt_1", now=T0, lease=1, ttl=TTL)
        hold = "LOCK TABLE flask_hooks_log IN ACCESS EXCLUSIVE MODE"
        assert refused_while_held(engine, hold, lambda: store.deliveries(NS))
        assert store.deliveries(NS) == []
        assert store.get(NS, "evt_1") is None
    finally:
        store.close()
        engine.dispose()


def test_sqlite_locked_elsewhere_is_a_bounded_wait(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SqlStore(f"sqlite:///{path}", timeout=0.2)
    try:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        import sqlite3

        foreign = sqlite3.connect(path, isolation_level=None)
        foreign.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable):
                store.claim(NS, "evt_2", now=T0, lease=LEASE, ttl=TTL)
        finally:
            foreign.execute("ROLLBACK")
            foreign.close()
        assert store.claim(NS, "evt_2", now=T0, lease=LEASE, ttl=TTL).state == "new"
    finally:
        store.close()


# The schema and the engine ------------------------------------------------------------------


def test_metadata_has_the_tables_and_indexes_and_they_are_created_on_first_use(url: str) -> None:
    assert set(metadata.tables) == {"flask_hooks_deliveries", "flask_hooks_log"}
    indexes = {
        "flask_hooks_deliveries_retention": ["retained_until"],
        "flask_hooks_deliveries_received": ["ns", "received_at", "id"],
        "flask_hooks_deliveries_status": ["ns", "status", "received_at"],
        "flask_hooks_log_ns": ["ns", "seq"],
    }
    declared = {i.name: [c.name for c in i.columns] for t in metadata.tables.values() for i in t.indexes}
    assert declared == indexes
    store = SqlStore(url)
    try:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        inspector = sa.inspect(store.engine)
        assert {"flask_hooks_deliveries", "flask_hooks_log"} <= set(inspector.get_table_names())
        found = {i["name"] for name in metadata.tables for i in inspector.get_indexes(name)}
        assert set(indexes) <= found
    finally:
        store.close()
    again = SqlStore(url)  # an existing schema is kept as it is
    try:
        assert again.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "inflight"
    finally:
        again.close()


def test_close_disposes_only_an_engine_the_store_built(url: str) -> None:
    given = sa.create_engine(url)
    try:
        store = SqlStore(given)
        store.deliveries(NS)
        store.close()
        assert cast(QueuePool, given.pool).checkedin() == 1  # the app's pool is untouched
        owned = SqlStore(url)
        owned.deliveries(NS)
        pool = owned.engine.pool
        owned.close()
        assert cast(QueuePool, pool).checkedin() == 0
    finally:
        given.dispose()


def test_urls_and_what_is_refused() -> None:
    for url in ("postgresql://user:secret@127.0.0.1:1/db", "postgres://user:secret@127.0.0.1:1/db"):
        store = SqlStore(url)
        assert "secret" not in repr(store)
        assert store.engine.dialect.driver in ("psycopg", "psycopg2")
    with pytest.raises(TypeError):
        SqlStore(42)


def test_the_repr_of_a_store_on_flask_sqlalchemy_shows_no_password(tmp_path: Path) -> None:
    """Flask-SQLAlchemy's own repr shows its URL, with a password given as ``?password=``."""
    db = SQLAlchemy()
    app = Flask("repr", instance_path=str(tmp_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://u@127.0.0.1:1/db?password=pw-51c2"
    db.init_app(app)
    with app.app_context():
        assert repr(SqlStore(db)) == "<SqlStore SQLAlchemy>"
    with pytest.raises(ValueError):
        SqlStore("sqlite:///x.sqlite3", timeout=0)


def test_renewals_reach_the_database_of_the_app_that_claimed(tmp_path: Path) -> None:
    """One ``SqlStore(db)`` on two apps of the same import name (a factory, a database per
    tenant): the lease keeper's thread has no app context, and renewed app 1's claim in
    app 2's database, so app 1's lease ran out while its handler ran."""
    from flask_hooks.extension import AppLeases
    from flask_hooks.stores.leases import LeaseKeeper
    from tests.helpers import ManualClock

    db = SQLAlchemy()
    store = SqlStore(db)
    hooks = Hooks(store=store, secret="s3cret")
    apps = []
    for tenant in ("one", "two"):
        app = Flask("tenant", instance_path=str(tmp_path / tenant))
        app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / tenant}.sqlite3")
        db.init_app(app)
        hooks.init_app(app)
        apps.append(app)
    timer = ManualClock(0.0)
    keeper = LeaseKeeper(timer=timer, thread=False)
    for app in apps:
        hooks.receiver(app).pipeline.leases = AppLeases(app, store, keeper)
    renewed: list[int] = []

    @hooks.on("a.b")
    def slow(event: Event) -> None:
        if event.id == "evt_1":  # in app one: app two receives meanwhile, then the keeper runs
            other = generic_post(apps[1].test_client(), {"id": "evt_2", "type": "a.b"}, secret="s3cret")
            assert other.status_code == 200
            timer.advance(3600)
            thread = threading.Thread(target=lambda: renewed.append(keeper.tick()))  # no app context
            thread.start()
            thread.join()

    first = generic_post(apps[0].test_client(), {"id": "evt_1", "type": "a.b"}, secret="s3cret")
    assert first.status_code == 200
    assert renewed == [1]  # renewed where it was claimed, not "taken over"


def test_a_constraint_checked_at_commit_is_the_handler_s_failure_not_the_store_s(
    pg_url: str,  # noqa: F811
) -> None:
    """A deferred foreign key fails at COMMIT: the handler's writes broke it, so it is the
    handler's error (a 500, its traceback logged), not an unavailable store (a 503)."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE parent (id TEXT PRIMARY KEY)"))
            checked_at_commit = "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED"
            conn.execute(sa.text(f"CREATE TABLE child (parent TEXT {checked_at_commit})"))
        store = SqlStore(engine)
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def run() -> Reply:
            connection().execute(sa.text("INSERT INTO child VALUES ('no such parent')"))
            return REPLY

        with pytest.raises(sa.exc.IntegrityError):
            store.atomic(NS, "evt_1", claim.token, "billing.book", run, now=T0)
        store.release(NS, "evt_1", claim.token, now=T0 + 1)
        assert dict(store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL).handlers) == {}  # not marked
    finally:
        engine.dispose()


def test_a_handler_that_swallows_a_database_error_fails_not_the_store(
    pg_url: str,  # noqa: F811
) -> None:
    """``try: insert except IntegrityError: pass`` leaves a PostgreSQL transaction aborted:
    nothing of it can commit. That is the handler's failure (a 500 naming the fix), not an
    unavailable store (a 503 that sends the operator to a healthy database)."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE seen (id TEXT PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO seen VALUES ('evt_1')"))
        store = SqlStore(engine)
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def run() -> Reply:
            try:  # noqa: SIM105 - the pattern under test, as users write it
                connection().execute(sa.text("INSERT INTO seen VALUES ('evt_1')"))
            except sa.exc.IntegrityError:
                pass  # "already seen": fine on SQLite, fatal to a PostgreSQL transaction
            return REPLY

        with pytest.raises(RuntimeError, match="SAVEPOINT"):
            store.atomic(NS, "evt_1", claim.token, "billing.book", run, now=T0)
        store.release(NS, "evt_1", claim.token, now=T0 + 1)
        again = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
        assert again.state == "new" and dict(again.handlers) == {}

        def with_savepoint() -> Reply:
            try:
                with connection().begin_nested():
                    connection().execute(sa.text("INSERT INTO seen VALUES ('evt_1')"))
            except sa.exc.IntegrityError:
                pass
            return REPLY

        assert store.atomic(NS, "evt_1", again.token, "billing.book", with_savepoint, now=T0 + 2) == REPLY
    finally:
        engine.dispose()


def test_a_handler_that_commits_is_refused_and_nothing_of_it_commits(engine: sa.Engine) -> None:
    """``connection().commit()`` in the handler committed its rows without its mark: a retry
    (a later handler failed, a lease ran out) wrote them again. The commit is refused."""
    store = SqlStore(engine)
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

    def committing() -> Reply:
        book("evt_1")()
        connection().commit()
        return REPLY

    with pytest.raises(RuntimeError, match="must not commit"):
        store.atomic(NS, "evt_1", claim.token, "billing.book", committing, now=T0)
    assert rows(engine) == []

    def swallowing() -> Reply:  # catching the refusal changes nothing
        book("evt_1")()
        try:  # noqa: SIM105 - the pattern under test, as users write it
            connection().commit()
        except RuntimeError:
            pass
        return REPLY

    with pytest.raises(RuntimeError, match="must not commit"):
        store.atomic(NS, "evt_1", claim.token, "billing.book", swallowing, now=T0)
    assert rows(engine) == []
    store.release(NS, "evt_1", claim.token, now=T0 + 1)
    retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
    assert dict(retry.handlers) == {}
    assert store.atomic(NS, "evt_1", retry.token, "billing.book", book("evt_1"), now=T0 + 2) == REPLY
    assert rows(engine) == ["evt_1"]


def test_a_savepoint_of_db_session_in_an_atomic_handler_is_no_commit(
    flask_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    """``db.session.begin_nested()``, the fix docs/database.rst gives for a part that may
    fail: its release fires the session's ``before_commit`` too, and must not be refused."""
    app, db, Booking = flask_db
    store = SqlStore(db)
    with app.app_context():
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def booking() -> Reply:
            with db.session.begin_nested():
                db.session.add(Booking(event="evt_1"))
            nested = db.session.begin_nested()
            db.session.add(Booking(event="evt_1b"))
            nested.commit()
            return REPLY

        assert store.atomic(NS, "evt_1", claim.token, "billing.book", booking, now=T0) == REPLY
        db.session.remove()
        assert sorted(db.session.scalars(sa.select(Booking.event)).all()) == ["evt_1", "evt_1b"]


def test_a_handler_that_commits_db_session_is_refused_and_nothing_of_it_commits(
    flask_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    app, db, Booking = flask_db
    store = SqlStore(db)
    with app.app_context():
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def committing() -> Reply:
            db.session.add(Booking(event="evt_1"))
            db.session.commit()
            return REPLY

        with pytest.raises(RuntimeError, match="must not commit"):
            store.atomic(NS, "evt_1", claim.token, "billing.book", committing, now=T0)
        assert db.session.scalars(sa.select(Booking.event)).all() == []
        store.release(NS, "evt_1", claim.token, now=T0 + 1)
        retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
        assert dict(retry.handlers) == {}

        def booking() -> Reply:
            db.session.add(Booking(event="evt_1"))
            return REPLY

        assert store.atomic(NS, "evt_1", retry.token, "billing.book", booking, now=T0 + 2) == REPLY
        db.session.remove()
        assert db.session.scalars(sa.select(Booking.event)).all() == ["evt_1"]


def test_a_handler_that_rolls_back_then_commits_db_session_is_refused_too(
    flask_db: tuple[Flask, SQLAlchemy, Any],
) -> None:
    """After a rollback the session's next transaction is on a new connection: its commit
    must be refused as well."""
    app, db, Booking = flask_db
    store = SqlStore(db)
    with app.app_context():
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)

        def committing() -> Reply:
            db.session.rollback()
            db.session.add(Booking(event="evt_1"))
            db.session.commit()
            return REPLY

        with pytest.raises(RuntimeError, match="must not commit"):
            store.atomic(NS, "evt_1", claim.token, "billing.book", committing, now=T0)
        db.session.remove()
        assert db.session.scalars(sa.select(Booking.event)).all() == []
