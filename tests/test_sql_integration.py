"""``SqlStore`` through the extension: URLs, ``atomic=True``, Flask-SQLAlchemy and the inbox.

The store on its own is in ``tests/stores/test_sql*.py``; here it is what a
user configures: ``HOOKS_STORE`` set to a SQLAlchemy URL (SQLite through
SQLAlchemy, and a real PostgreSQL from ``tests/postgres.py``), or
``SqlStore(db)`` beside the app's own models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_hooks import ConfigError, Event, Hooks
from flask_hooks.stores import _sql_engine
from flask_hooks.stores.sql import SqlStore, metadata
from tests.conftest import generic_post
from tests.postgres import PostgresServer, pg_url, postgres  # noqa: F401 - fixtures

NS = "app:hooks"
T0 = 1_700_000_000.0


def opened(app: Flask, hooks: Hooks) -> SqlStore:
    store = hooks.receiver(app).store
    assert isinstance(store, SqlStore)
    return store


# HOOKS_STORE as a SQLAlchemy URL --------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'x.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_a_sqlalchemy_url_in_hooks_store_opens_a_sql_store(
    make_app: Callable[..., Flask], sql_url: str
) -> None:
    hooks = Hooks()
    handled: list[str] = []

    @hooks.on("order")
    def book(event: Event) -> None:
        handled.append(event.id)

    app = make_app(hooks, HOOKS_STORE=sql_url)
    store = opened(app, hooks)
    try:
        assert store.engine.url.render_as_string(hide_password=False) == sql_url
        client = app.test_client()
        assert generic_post(client, {"id": "evt_1", "type": "order.paid"}).status_code == 200
        assert generic_post(client, {"id": "evt_1", "type": "order.paid"}).status_code == 200
        assert handled == ["evt_1"]
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(metadata.tables["flask_hooks_deliveries"].c.state)).all()
        assert rows == [("done",)]
    finally:
        store.close()


@pytest.mark.parametrize("url", ["memory://", "sqlite:///hooks.sqlite3"])
def test_atomic_on_a_store_that_is_not_sql_is_a_config_error(
    make_app: Callable[..., Flask], url: str
) -> None:
    hooks = Hooks()

    @hooks.on("order.paid", atomic=True)
    def book(event: Event) -> None: ...

    with pytest.raises(ConfigError, match=r"atomic=True.*SqlStore"):
        make_app(hooks, HOOKS_STORE=url)


# A connection idle in the pool is pinged; one in steady use is not ------------------------


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "in-use"])
def test_a_url_store_after_a_restart_pings_idle_connections_only(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    idle: bool,
) -> None:
    """Idle: the stale connection fails its ping and is replaced, so no 503. In use: no ping
    (no round trip); the first transaction after the restart finds its connection lost, the
    pool is renewed, and it runs again on a new one: no 503 either."""
    monkeypatch.setattr(_sql_engine, "PING_IDLE", -1.0 if idle else 3600.0)
    store = SqlStore(pg_url, timeout=1.0)
    try:
        assert store.claim(NS, "evt_1", now=T0, lease=30, ttl=3600).state == "new"
        postgres.stop()
        postgres.start()
        assert store.claim(NS, "evt_2", now=T0, lease=30, ttl=3600).state == "new"
        assert store.claim(NS, "evt_1", now=T0, lease=30, ttl=3600).state == "inflight"
    finally:
        store.close()


# atomic=True through Flask-SQLAlchemy, on SQLite through SQLAlchemy ----------------------


DELIVERY = {"id": "evt_1", "type": "order.paid"}


@dataclasses.dataclass
class Shop:
    """An app with its own model beside the store, and an atomic handler failing while ``failures`` last."""

    app: Flask
    hooks: Hooks
    db: SQLAlchemy
    model: Any
    failures: list[Exception] = dataclasses.field(default_factory=list)

    def deliver(self, fail: bool = False) -> Any:
        if fail:
            self.failures.append(RuntimeError("payment provider down"))
        return generic_post(self.app.test_client(), DELIVERY)

    def booked(self) -> list[str]:
        with self.app.app_context():
            return list(self.db.session.scalars(sa.select(self.model.event)))


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class Booking(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bookings"
        n: Mapped[int] = mapped_column(primary_key=True)
        event: Mapped[str]

    app = Flask("shop", instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        HOOKS_SECRET="whsec-test-secret",
        SQLALCHEMY_DATABASE_URI=f"sqlite+pysqlite:///{tmp_path / 'shop.db'}",
    )
    shop = Shop(app, Hooks(store=SqlStore(db)), db, Booking)

    @shop.hooks.on("order.paid", atomic=True, name="book")
    def book(event: Event) -> dict[str, str]:
        db.session.add(Booking(event=event.id))
        db.session.flush()  # written inside the transaction; the store commits or rolls back
        if shop.failures:
            raise shop.failures.pop()
        return {"booked": event.id}

    db.init_app(app)
    shop.hooks.init_app(app)
    with app.app_context():
        db.create_all()
    try:
        yield shop
    finally:
        with app.app_context():
            db.engine.dispose()


def test_an_atomic_handler_writes_its_row_once_across_a_failure_and_retries(shop: Shop) -> None:
    assert shop.deliver(fail=True).status_code == 500
    assert shop.booked() == []  # flushed, then rolled back with the failure
    answer = shop.deliver()
    assert (answer.status_code, answer.json) == (200, {"booked": "evt_1"})
    again = shop.deliver()
    assert (again.status_code, again.json) == (200, {"booked": "evt_1"})  # the recorded reply
    assert shop.booked() == ["evt_1"]


@pytest.mark.parametrize("end", ["rollback", "remove"])
def test_a_savepoint_after_the_handler_ended_its_transaction_commits_nothing_alone(
    shop: Shop, end: str
) -> None:
    """On SQLite, a SAVEPOINT after a rollback opened a transaction of its own, and its
    RELEASE committed the handler's write: once more on every retry. ``db.session.remove()``
    gives the handler another ``Session``: still the handler's."""
    runs: list[str] = []

    @shop.hooks.on("order.paid", atomic=True, name="ledger")
    def ledger(event: Event) -> None:
        runs.append(event.id)
        getattr(shop.db.session, end)()  # rollback: as after an IntegrityError it caught
        with shop.db.session.begin_nested():
            shop.db.session.add(shop.model(event=f"ledger:{event.id}"))
        if len(runs) < 3:
            raise RuntimeError("a later step fails")

    assert [shop.deliver().status_code for _ in range(4)] == [500, 500, 200, 200]
    assert sorted(shop.booked()) == ["evt_1", "ledger:evt_1"]


def test_another_session_s_savepoint_during_an_atomic_handler_is_its_own(shop: Shop) -> None:
    """Only the handler's own transaction is begun before a savepoint: another session that
    only reads waited for the handler's write lock, and failed "database is locked"."""

    @shop.hooks.on("order.paid", atomic=True, name="report")
    def report(event: Event) -> None:
        with sa.orm.Session(shop.db.engine) as other, other.begin_nested():
            other.execute(sa.text("SELECT 1"))

    assert shop.deliver().status_code == 200


@pytest.mark.parametrize("use", ["commit", "savepoint"])
def test_another_app_context_s_session_is_not_the_handler_s(shop: Shop, use: str) -> None:
    """``db.session`` in an app context the handler pushed is another session: its commit
    was refused (a 500 on every retry), its savepoint waited for the handler's write lock."""

    @shop.hooks.on("order.paid", atomic=True, name="report")
    def report(event: Event) -> None:
        with shop.app.app_context():
            if use == "commit":
                shop.db.session.execute(sa.text("SELECT 1"))
                shop.db.session.commit()
            else:
                with shop.db.session.begin_nested():
                    shop.db.session.execute(sa.text("SELECT 1"))

    assert shop.deliver().status_code == 200


@pytest.mark.parametrize("end", ["rollback", "remove"])
def test_a_commit_of_the_handler_s_later_connection_is_refused(shop: Shop, end: str) -> None:
    """After a rollback or ``remove()`` the session is on another connection, whose own
    ``commit()`` went through: the write committed alone, once more on every retry."""

    @shop.hooks.on("order.paid", atomic=True, name="ledger")
    def ledger(event: Event) -> None:
        getattr(shop.db.session, end)()
        shop.db.session.add(shop.model(event=f"ledger:{event.id}"))
        shop.db.session.flush()
        shop.db.session.connection().commit()

    assert shop.deliver().status_code == 500
    assert shop.booked() == ["evt_1"]


def test_an_atomic_handler_s_own_sql_error_is_its_failure(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite raises OperationalError for "no such table": it was a 503 "store unavailable"
    on every retry, and nothing was logged."""

    @shop.hooks.on("order.paid", atomic=True, name="audit")
    def audit(event: Event) -> None:
        shop.db.session.execute(sa.text("INSERT INTO audit_log (event) VALUES (:id)"), {"id": event.id})

    answer = shop.deliver()
    assert (answer.status_code, answer.json) == (500, {"status": "error", "reason": "handler failed"})
    assert any("no such table: audit_log" in r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert shop.booked() == ["evt_1"]  # the first handler's own transaction committed


def test_the_inbox_shows_and_replays_deliveries_on_the_sql_store(shop: Shop) -> None:
    assert shop.deliver(fail=True).status_code == 500
    inbox = shop.hooks.inbox(shop.app)

    failed = inbox.get("evt_1")
    assert failed is not None
    assert (failed.status, dict(failed.handlers)) == ("failed", {"book": "failed"})
    assert [(a.outcome, a.code, a.failed) for a in failed.attempts] == [("error", 500, "book")]
    assert failed.payload == DELIVERY
    assert [d.id for d in inbox.query(status="failed")] == ["evt_1"]

    replayed = inbox.replay("evt_1")  # the fix is deployed: run what has not succeeded
    assert (replayed.status, dict(replayed.handlers)) == ("received", {"book": "succeeded"})
    assert shop.booked() == ["evt_1"]
    assert shop.deliver().json == {"booked": "evt_1"}  # the sender's retry: the recorded reply
    assert inbox.replay("evt_1").status == "received"  # nothing left to run
    assert shop.booked() == ["evt_1"]

    inbox.replay("evt_1", handlers=["book"])  # asked for by name: it runs again, deliberately
    assert shop.booked() == ["evt_1", "evt_1"]
    assert inbox.get("nope") is None
