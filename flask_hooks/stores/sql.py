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

SQLAlchemy owns the connections and transactions (pool, pings, commit,
Flask-SQLAlchemy's ``db.session``); the statements of a delivery's two
transactions run on the driver's cursor of that same connection, as SQL
rendered once per engine (see ``_sql_rendered``). On PostgreSQL through an
engine built here, the store keeps the connections it used out of the pool,
in autocommit, so a new delivery's claim and its completion are one
statement each (see ``_sql_held``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ..core.errors import InFlight, StoreUnavailable
from ..core.inbox import Kept, Stored
from . import _sql_writes as writes
from ._sql_atomic import Transaction, atomically
from ._sql_atomic import connection as connection
from ._sql_engine import BOUNDED_DRIVERS, DOWN, build_engine
from ._sql_held import DRIVERS, HeldConnections
from ._sql_rendered import Cursor, Statements
from ._sql_schema import deliveries as d
from ._sql_schema import inbox_query, key, purgeable, stored, trim_log
from ._sql_schema import log as log_table
from ._sql_schema import metadata as metadata
from .base import (
    Claim,
    DedupeStore,
    LogEntry,
    Reply,
    encode_reply,
    fork_lock,
    lease_is_live,
    process_generation,
)

__all__ = ["SqlStore", "connection", "metadata"]

T = TypeVar("T")

log = logging.getLogger("flask_hooks")


#: The log is trimmed to ``log_size`` when its sequence crosses a multiple of this, and
#: a receiver's rows past their retention are swept (a bounded batch) at multiples of the other.
_TRIM_EVERY = 64
_SWEEP_EVERY = 256
_SWEEP_BATCH = 500

#: Per pooled connection: whether PostgreSQL's ``lock_timeout`` is already set on it.
_BOUNDED = "flask_hooks.lock_timeout_set"

#: What every write transaction on SQLite starts with (see :meth:`SqlStore._lock_writes`).
_BEGIN_IMMEDIATE = sa.text("BEGIN IMMEDIATE")

#: ``pg_advisory_xact_lock`` key serialising the creation of the tables across processes.
_SCHEMA_LOCK = 0x666C61736B686F6B


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
        #: Whether the connect options bound lock waits (an engine built here, on psycopg).
        self._bounded = False
        if isinstance(bind, Engine):
            self._engine_given = bind
        elif isinstance(bind, (str, URL)):
            self._engine_given = build_engine(bind, timeout)
            self._owned = True
            self._bounded = self._engine_given.dialect.driver in BOUNDED_DRIVERS
        elif hasattr(type(bind), "engine") and hasattr(bind, "session"):  # not bind.engine: no app yet
            self._db = bind  # Flask-SQLAlchemy: db.engine is per app, so it is read per use
        else:
            raise TypeError(f"SqlStore needs an Engine, a URL or a Flask-SQLAlchemy db, not {bind!r}")
        #: The engines whose tables exist, with their statements as each one's dialect renders them.
        self._ready: dict[Engine, Statements] = {}
        #: The connections held out of the pool of the engine built here (PostgreSQL).
        self._held: HeldConnections | None = None
        self._schema_lock = threading.Lock()
        self._generation = process_generation()
        self._lock_timeout = sa.text(f"SET LOCAL lock_timeout = {max(1, round(timeout * 1000))}")
        self._show_lock_timeout = sa.text("SHOW lock_timeout")

    def __repr__(self) -> str:
        if self._engine_given is None:
            return f"<SqlStore {self._db!r}>"
        return f"<SqlStore {self._engine_given.url.render_as_string(hide_password=True)}>"

    # Engines, transactions and the schema.

    @property
    def engine(self) -> Engine:
        """The engine in use (with ``SqlStore(db)``, the current app's ``db.engine``)."""
        return self._engine()

    def _engine(self) -> Engine:
        self._check_fork()
        if self._db is None:
            assert self._engine_given is not None
            return self._engine_given
        # The current app's (the lease keeper renews inside the app's context too).
        engine: Engine = self._db.engine
        return engine

    def _check_fork(self) -> None:
        """In a forked worker (gunicorn), drop the parent's connections once, whichever thread
        comes first: a second drop would lose the connections the first one has since used."""
        if self._generation != process_generation():
            with fork_lock():
                if self._generation != process_generation():
                    self._forked()

    def _forked(self) -> None:
        """A forked worker must not share its parent's pooled connections."""
        self._generation = process_generation()
        self._schema_lock = threading.Lock()
        if self._held is not None:
            self._held.forked()
        for engine in self._ready:
            engine.dispose(close=False)

    def _prepared(self) -> tuple[Engine, Statements]:
        """The engine and its statements, its tables created on first use (``checkfirst``: an
        existing schema stays)."""
        engine = self._engine()
        statements = self._ready.get(engine)
        if statements is not None:
            return engine, statements
        with self._schema_lock:
            statements = self._ready.get(engine)
            if statements is None:
                statements = Statements(engine.dialect)
                try:
                    with engine.begin() as conn, Cursor(conn, statements) as cursor:
                        self._lock_writes(cursor)  # first: the wait for the lock below is bounded too
                        if conn.dialect.name == "postgresql":  # workers racing at start-up
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                        metadata.create_all(conn, checkfirst=True)
                except DOWN as exc:
                    raise StoreUnavailable() from exc
                if self._owned and engine.dialect.name == "postgresql" and engine.dialect.driver in DRIVERS:
                    # Its connect options bound lock waits: no _lock_writes (SET LOCAL) needed.
                    self._held = HeldConnections(engine, statements)
                self._ready[engine] = statements
        return engine, statements

    def _lock_writes(self, cursor: Cursor) -> None:
        """Start a write transaction: SQLite's write lock at once; a lock-wait bound on PostgreSQL
        (where reads take it too)."""
        conn = cursor.conn
        name = conn.dialect.name
        if name == "sqlite":
            raw = conn.connection.dbapi_connection
            if raw is not None and not getattr(raw, "in_transaction", True):
                cursor.run(_BEGIN_IMMEDIATE, {})
        elif name == "postgresql" and not self._bounded:
            # An engine given may bound lock waits itself (in its connect options). Asked once
            # per connection; only connections without a bound pay a SET LOCAL per transaction.
            info = conn.connection.info
            bounded = info.get(_BOUNDED)
            if bounded is None:
                bounded = info[_BOUNDED] = cursor.row(self._show_lock_timeout, {})[0] != "0"
            if not bounded:
                cursor.run(self._lock_timeout, {})

    def _write(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(cursor, *args, **kwargs)`` in one write transaction (on a held connection, its
        statements before ``cursor.begin()`` each commit by itself); database errors are a 503."""
        engine, statements = self._prepared()
        held = self._held
        if held is not None:
            return held.write(work, *args, **kwargs)
        return self._transaction(engine, statements, work, *args, **kwargs)

    def _transaction(
        self, engine: Engine, statements: Statements, work: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``work(cursor, *args, **kwargs)`` in a transaction of SQLAlchemy's (``cursor.conn``)."""
        self._lend()
        try:
            with engine.begin() as conn, Cursor(conn, statements) as cursor:
                self._lock_writes(cursor)
                return work(cursor, *args, **kwargs)
        except DOWN as exc:
            raise StoreUnavailable() from exc

    def _lend(self) -> None:
        """A checkout of SQLAlchemy's is about to happen: it must not wait for connections held."""
        if self._held is not None:
            self._held.lend()

    def _core(self, work: Callable[[sa.Connection], T]) -> T:
        """``work(conn)`` with SQLAlchemy Core statements, in one write transaction."""
        engine, statements = self._prepared()
        return self._transaction(engine, statements, lambda cursor: work(cursor.conn))

    def _read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(conn, *args)``; on PostgreSQL, in a transaction whose lock waits are bounded
        (a migration may hold the tables), rolled back at the end."""
        engine, statements = self._prepared()
        self._lend()
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "postgresql" and not self._bounded:
                    conn.begin()  # the SET LOCAL goes through the driver's cursor: begun here
                    with Cursor(conn, statements) as cursor:
                        self._lock_writes(cursor)
                return work(conn, *args)
        except DOWN as exc:
            raise StoreUnavailable() from exc

    # The state machine.

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        return self._write(writes.claim, ns, id, now, lease, ttl, keep)

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        self._write(writes.mark, ns, id, token, handler, reply)

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        self._write(writes.renew, ns, id, token, now + lease)

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
        self._maintain(ns, self._write(writes.finish, ns, id, token, done, entry, fenced=True), now)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        free = {"state": "free", "token": "", "lease_until": 0.0, "status": "failed"}
        self._maintain(ns, self._write(writes.finish, ns, id, token, free, entry, fenced=False), now)

    # The delivery log.

    def log(self, ns: str, entry: LogEntry) -> None:
        self._maintain(ns, self._write(writes.append, ns, entry), 0.0)  # no ``now``: trim, sweep nothing

    def _maintain(self, ns: str, seq: int, now: float) -> None:
        """Now and then, trim the log and sweep expired rows: best effort, in their own transactions."""
        try:
            if seq and seq % _TRIM_EVERY == 0:
                self._core(lambda conn: conn.execute(trim_log(ns, self.log_size)))
            if seq and seq % _SWEEP_EVERY == 0 and now:
                self.purge(ns, now=now, limit=_SWEEP_BATCH)
        except StoreUnavailable:
            log.debug("housekeeping of the SQL store failed; trying again later", exc_info=True)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        query = sa.select(log_table.c.entry).where(log_table.c.ns == ns)
        if status is not None:
            query = query.where(log_table.c.status == status)
        query = query.order_by(log_table.c.seq.desc()).limit(max(0, min(limit, self.log_size)))
        rows = self._read(lambda conn: conn.execute(query).scalars().all())
        return [LogEntry.from_json(raw) for raw in rows]

    # The inbox.

    def get(self, ns: str, id: str) -> Stored | None:
        query = sa.select(d).where(key(ns, id), d.c.received_at.is_not(None))
        row = self._read(lambda conn: conn.execute(query).first())
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
        return [stored(row) for row in self._read(lambda conn: conn.execute(query).all())]

    def reopen(
        self,
        ns: str,
        id: str,
        *,
        now: float,
        lease: float,
        rerun: Collection[str] = (),
        keep: Collection[str] = (),
    ) -> Claim:
        return self._write(writes.reopen, ns, id, now, lease, frozenset(rerun), frozenset(keep))

    def forget(self, ns: str, id: str, *, now: float, lease: float) -> bool:
        read = sa.select(d.c.state, d.c.lease_until).where(key(ns, id)).with_for_update()

        def work(conn: sa.Connection) -> bool:
            row = conn.execute(read).first()
            if row is None:
                return False
            if row.state == "inflight" and lease_is_live(row.lease_until, now, lease):
                raise InFlight(after=row.lease_until - now)
            return bool(conn.execute(d.delete().where(key(ns, id))).rowcount)

        return self._core(work)

    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        gone = purgeable(ns, now, received_before)
        pick = sa.select(d.c.id).where(gone).limit(max(0, limit))

        def work(conn: sa.Connection) -> int:
            locked = pick.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else pick
            ids = conn.execute(locked).scalars().all()  # rows a claim holds are not due anyway
            return conn.execute(d.delete().where(gone, d.c.id.in_(ids))).rowcount if ids else 0

        return self._core(work)

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
        engine, statements = self._prepared()

        def mark(cursor: Cursor, reply: Reply | None) -> None:
            writes.mark(cursor, ns, id, token, handler, reply)

        if self._db is not None:
            session = self._db.session
            tx = Transaction(session.connection, session.flush, session.commit, session.rollback, session())
            return atomically(tx, statements, self._lock_writes, run, mark)
        self._lend()
        try:
            conn = engine.connect()
        except DOWN as exc:
            raise StoreUnavailable() from exc
        with conn:
            # Begun here: the store's statements go through the DBAPI cursor, which does not
            # autobegin, and a handler that never calls execute() would commit nothing.
            try:
                conn.begin()
            except DOWN as exc:
                raise StoreUnavailable() from exc
            tx = Transaction(lambda: conn, lambda: None, conn.commit, conn.rollback)
            return atomically(tx, statements, self._lock_writes, run, mark)

    def close(self) -> None:
        """Dispose of the engine this store built from a URL (an engine or db given stays open)."""
        self._check_fork()  # a forked child closes none of its parent's connections
        if self._owned and self._engine_given is not None:
            if self._held is not None:
                self._held.close()
            self._engine_given.dispose()
