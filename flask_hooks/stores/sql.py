"""``SqlStore``: the dedupe store and inbox in the app's own database (SQLAlchemy Core).

Built from an :class:`~sqlalchemy.engine.Engine`, any SQLAlchemy URL
(``postgresql+psycopg://...``, ``sqlite:///...``) or Flask-SQLAlchemy's
``db``. Its tables are in :data:`metadata` (for Alembic) and are created
on first use. It is the one store that can run ``atomic=True`` handlers
(:meth:`SqlStore.atomic`): the handler's writes and the record of its
success commit in one transaction, fenced by the claim's token.

Races are settled by the database: a claim is ``INSERT ... ON CONFLICT DO
NOTHING`` and, for a row that exists, ``SELECT ... FOR UPDATE`` before the
update, so two processes can never both own a delivery. SQLite has no row
locks: every write transaction there starts with ``BEGIN IMMEDIATE``,
which takes the database's write lock before the first read. Every
database error is :class:`~flask_hooks.core.errors.StoreUnavailable` (a
503): nothing is acknowledged without its record.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ..core.errors import LeaseLost, StoreUnavailable
from ..core.inbox import Kept, Stored
from . import _sql_schema as sql
from ._sql_schema import at_least, build_engine, inbox_query, key, owned, purgeable, stored, trim_log
from ._sql_schema import deliveries as d
from ._sql_schema import log as log_table
from ._sql_schema import metadata as metadata
from .base import (
    Claim,
    DedupeStore,
    LogEntry,
    Reply,
    encode_reply,
    process_generation,
)

__all__ = ["SqlStore", "connection", "metadata"]

T = TypeVar("T")

log = logging.getLogger("flask_hooks")


#: The open connection of the running ``atomic=True`` handler (see :func:`connection`).
_current: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "flask_hooks_sql_connection", default=None
)

#: The log is trimmed to ``log_size`` when its sequence crosses a multiple of this, and
#: a receiver's rows past their retention are swept (a bounded batch) at multiples of the other.
_TRIM_EVERY = 64
_SWEEP_EVERY = 256
_SWEEP_BATCH = 500

#: What a database that is down, restarting, locked or slow raises: a 503, never a false
#: success. Errors in the SQL we send (a bug) are not among them and stay 500s.
_DOWN = (DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError, sa_exc.PendingRollbackError)

#: Per pooled connection: whether PostgreSQL's ``lock_timeout`` is already set on it.
_BOUNDED = "flask_hooks.lock_timeout_set"

#: ``pg_advisory_xact_lock`` key serialising the creation of the tables across processes.
_SCHEMA_LOCK = 0x666C61736B686F6B


def connection() -> Connection:
    """The connection whose transaction the running ``atomic=True`` handler is in.

    Write through it and the writes commit together with the record of the
    handler's success, or not at all::

        @hooks.on("order.paid", atomic=True)
        def book(event):
            connection().execute(orders.insert().values(id=event.id))

    With ``SqlStore(db)`` (Flask-SQLAlchemy), ``db.session`` is in the same
    transaction. Do not commit: the store does.
    """
    conn = _current.get()
    if conn is None:
        raise RuntimeError("flask_hooks.stores.sql.connection() is only available in an atomic=True handler")
    return conn


class SqlStore(DedupeStore):
    """The store in a SQL database, through SQLAlchemy Core.

    ``bind`` is an Engine, a URL, or Flask-SQLAlchemy's ``db`` (whose
    ``db.engine`` and ``db.session`` are used per app, so they need an app
    context, as requests and CLI commands have). An engine built here from
    a URL pings a connection that sat idle in its pool before using it (so
    it survives a restarted server) and, on PostgreSQL, bounds connecting and lock waits by ``timeout``
    seconds and statements by six times that; :meth:`close` disposes it.
    An engine or ``db`` given is the app's: configure those bounds there
    (see the docs), the store only bounds its own lock waits.
    """

    supports_atomic = True

    def __init__(self, bind: Engine | str | URL | Any, *, log_size: int = 1000, timeout: float = 5.0) -> None:
        if not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.log_size = log_size
        self.timeout = timeout
        self._db: Any = None
        self._engine_given: Engine | None = None
        self._owned = False
        if isinstance(bind, Engine):
            self._engine_given = bind
        elif isinstance(bind, (str, URL)):
            self._engine_given = build_engine(bind, timeout)
            self._owned = True
        elif hasattr(type(bind), "engine") and hasattr(bind, "session"):  # not bind.engine: no app yet
            self._db = bind  # Flask-SQLAlchemy: db.engine is per app, so it is read per use
        else:
            raise TypeError(f"SqlStore needs an Engine, a URL or a Flask-SQLAlchemy db, not {bind!r}")
        #: Flask-SQLAlchemy engines by namespace, for renewals from the lease keeper's thread.
        self._by_ns: dict[str, Engine] = {}
        self._ready: set[Engine] = set()
        self._schema_lock = threading.Lock()
        self._generation = process_generation()
        self._lock_timeout = sa.text(f"SET LOCAL lock_timeout = {max(1, round(timeout * 1000))}")

    def __repr__(self) -> str:
        if self._engine_given is None:
            return f"<SqlStore {self._db!r}>"
        return f"<SqlStore {self._engine_given.url.render_as_string(hide_password=True)}>"

    # Engines, transactions and the schema.

    @property
    def engine(self) -> Engine:
        """The engine in use (with ``SqlStore(db)``, the current app's ``db.engine``)."""
        return self._engine()

    def _engine(self, ns: str | None = None) -> Engine:
        if self._generation != process_generation():
            self._forked()
        if self._db is None:
            assert self._engine_given is not None
            return self._engine_given
        try:
            engine: Engine = self._db.engine
        except RuntimeError:  # no app context: a renewal from the lease keeper's thread
            found = self._by_ns.get(ns) if ns is not None else None
            if found is None:
                raise
            return found
        if ns is not None and self._by_ns.get(ns) is not engine:
            self._by_ns[ns] = engine
        return engine

    def _forked(self) -> None:
        """A forked worker (gunicorn) must not share its parent's pooled connections."""
        self._generation = process_generation()
        self._schema_lock = threading.Lock()
        for engine in self._ready:
            engine.dispose(close=False)

    def _prepared(self, ns: str | None) -> Engine:
        """The engine, its tables created on first use (``checkfirst``: an existing schema stays)."""
        engine = self._engine(ns)
        if engine in self._ready:
            return engine
        with self._schema_lock:
            if engine not in self._ready:
                try:
                    with engine.begin() as conn:
                        if conn.dialect.name == "postgresql":  # workers racing at start-up
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                        self._lock_writes(conn)
                        metadata.create_all(conn, checkfirst=True)
                except _DOWN as exc:
                    raise StoreUnavailable() from exc
                self._ready.add(engine)
        return engine

    def _lock_writes(self, conn: Connection) -> None:
        """Start a write transaction: SQLite's write lock at once; a lock-wait bound on PostgreSQL."""
        name = conn.dialect.name
        if name == "sqlite":
            raw = conn.connection.dbapi_connection
            if raw is not None and not getattr(raw, "in_transaction", True):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif name == "postgresql" and not self._owned:
            # An engine given may bound lock waits itself (in its connect options). Asked once
            # per connection; only connections without a bound pay a SET LOCAL per transaction.
            info = conn.connection.info
            bounded = info.get(_BOUNDED)
            if bounded is None:
                bounded = info[_BOUNDED] = conn.exec_driver_sql("SHOW lock_timeout").scalar() != "0"
            if not bounded:
                conn.execute(self._lock_timeout)

    def _write(self, ns: str, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(conn, *args, **kwargs)`` in one write transaction; database errors are a 503."""
        engine = self._prepared(ns)
        try:
            with engine.begin() as conn:
                self._lock_writes(conn)
                return work(conn, *args, **kwargs)
        except _DOWN as exc:
            raise StoreUnavailable() from exc

    def _read(self, ns: str, work: Callable[..., T], *args: Any) -> T:
        engine = self._prepared(ns)
        try:
            with engine.connect() as conn:
                return work(conn, *args)
        except _DOWN as exc:
            raise StoreUnavailable() from exc

    # The state machine.

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        return self._write(ns, sql.claim, ns, id, now, lease, ttl, keep)

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        self._write(ns, sql.mark, ns, id, token, handler, reply)

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        until = now + lease
        # The record must outlive the lease, or a short TTL would expire it under the handler.
        renewal = (
            d.update()
            .where(owned(ns, id, token))
            .values(
                lease_until=until,
                expires_at=at_least(d.c.expires_at, until),
                retained_until=at_least(d.c.retained_until, until),
            )
        )
        if self._write(ns, lambda conn: conn.execute(renewal).rowcount) != 1:
            raise LeaseLost()

    def complete(
        self,
        ns: str,
        id: str,
        token: str,
        *,
        outcome: str,
        reply: Reply | None,
        now: float,
        ttl: float,
        entry: LogEntry | None = None,
    ) -> None:
        done = {"state": "done", "token": "", "lease_until": 0.0, "expires_at": now + ttl}
        done.update(reply=encode_reply(reply), outcome=outcome, status=outcome)
        self._maintain(ns, self._write(ns, sql.finish, ns, id, token, done, entry, fenced=True), now)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        free = {"state": "free", "token": "", "lease_until": 0.0, "status": "failed"}
        self._maintain(ns, self._write(ns, sql.finish, ns, id, token, free, entry, fenced=False), now)

    # The delivery log.

    def log(self, ns: str, entry: LogEntry) -> None:
        self._maintain(ns, self._write(ns, sql.append, ns, entry), 0.0)  # no ``now``: trim, sweep nothing

    def _maintain(self, ns: str, seq: int, now: float) -> None:
        """Now and then, trim the log and sweep expired rows: best effort, in their own transactions."""
        try:
            if seq and seq % _TRIM_EVERY == 0:
                self._write(ns, lambda conn: conn.execute(trim_log(ns, self.log_size)))
            if seq and seq % _SWEEP_EVERY == 0 and now:
                self.purge(ns, now=now, limit=_SWEEP_BATCH)
        except StoreUnavailable:
            log.debug("housekeeping of the SQL store failed; trying again later", exc_info=True)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        query = sa.select(log_table.c.entry).where(log_table.c.ns == ns)
        if status is not None:
            query = query.where(log_table.c.status == status)
        query = query.order_by(log_table.c.seq.desc()).limit(max(0, min(limit, self.log_size)))
        rows = self._read(ns, lambda conn: conn.execute(query).scalars().all())
        return [LogEntry.from_json(raw) for raw in rows]

    # The inbox.

    def get(self, ns: str, id: str) -> Stored | None:
        query = sa.select(d).where(key(ns, id), d.c.received_at.is_not(None))
        row = self._read(ns, lambda conn: conn.execute(query).first())
        return None if row is None else stored(row)

    def query(
        self,
        ns: str,
        *,
        now: float,
        status: str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[Stored]:
        query = inbox_query(ns, now, status, type, since, until, before, limit)
        return [stored(row) for row in self._read(ns, lambda conn: conn.execute(query).all())]

    def reopen(self, ns: str, id: str, *, now: float, lease: float, rerun: Collection[str] = ()) -> Claim:
        return self._write(ns, sql.reopen, ns, id, now, lease, frozenset(rerun))

    def forget(self, ns: str, id: str) -> bool:
        return self._write(ns, lambda conn: bool(conn.execute(d.delete().where(key(ns, id))).rowcount))

    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        gone = purgeable(ns, now, received_before)
        pick = sa.select(d.c.id).where(gone).limit(max(0, limit))

        def work(conn: Connection) -> int:
            locked = pick.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else pick
            ids = conn.execute(locked).scalars().all()  # rows a claim holds are not due anyway
            return conn.execute(d.delete().where(gone, d.c.id.in_(ids))).rowcount if ids else 0

        return self._write(ns, work)

    # Atomic handlers.

    def atomic(
        self, ns: str, id: str, token: str, handler: str, run: Callable[[], Reply | None], *, now: float
    ) -> Reply | None:
        """Run ``run`` and record ``handler``'s success in one transaction, fenced by ``token``.

        The mark is the transaction's last statement before COMMIT: when the
        claim was taken over meanwhile (the lease ran out and another worker
        claimed it), nothing matches, everything rolls back, and
        :class:`LeaseLost` is raised. An exception from ``run`` rolls back
        and propagates (a database that went away becomes
        :class:`StoreUnavailable`). With ``SqlStore(db)`` the transaction
        is ``db.session``'s; otherwise :func:`connection` gives it.
        """
        engine = self._prepared(ns)
        if self._db is not None:
            session = self._db.session
            return self._atomically(
                ns,
                id,
                token,
                handler,
                run,
                session.connection,
                session.flush,
                session.commit,
                session.rollback,
            )
        try:
            conn = engine.connect()
        except _DOWN as exc:
            raise StoreUnavailable() from exc
        with conn:
            return self._atomically(
                ns, id, token, handler, run, lambda: conn, lambda: None, conn.commit, conn.rollback
            )

    def _atomically(
        self,
        ns: str,
        id: str,
        token: str,
        handler: str,
        run: Callable[[], Reply | None],
        current: Callable[[], Connection],
        flush: Callable[[], None],
        commit: Callable[[], None],
        rollback: Callable[[], None],
    ) -> Reply | None:
        try:
            self._lock_writes(current())
        except _DOWN as exc:
            _quietly(rollback)
            raise StoreUnavailable() from exc
        reset = _current.set(current())
        try:
            reply = run()
            flush()  # the handler's pending ORM writes are the handler's: their errors are its own
        except BaseException as exc:
            _quietly(rollback)
            if _unreachable(exc):
                raise StoreUnavailable() from exc
            raise
        finally:
            _current.reset(reset)
        try:
            sql.mark(current(), ns, id, token, handler, reply)
            commit()
        except LeaseLost:
            _quietly(rollback)
            raise
        except _DOWN as exc:
            _quietly(rollback)
            raise StoreUnavailable() from exc
        return reply

    def close(self) -> None:
        """Dispose of the engine this store built from a URL (an engine or db given stays open)."""
        if self._owned and self._engine_given is not None:
            self._engine_given.dispose()


def _unreachable(exc: BaseException) -> bool:
    """The database went away or timed out (not the handler's own mistake): a 503."""
    if isinstance(exc, DBAPIError) and bool(exc.connection_invalidated):
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


def _quietly(rollback: Callable[[], None]) -> None:
    try:
        rollback()
    except _DOWN:
        log.debug("rollback failed (the connection is gone; so is the transaction)", exc_info=True)
