"""The SQL store's engines and transactions, and the creation of its tables.

The base of :class:`~flask_hooks.stores.sql.SqlStore`: the engine in use
(built here from a URL, given, or the current app's Flask-SQLAlchemy
``db.engine``), dropped in a forked worker; its tables created on first
use; ``_write`` runs a step as one write transaction (on a connection held
out of the pool, see ``_sql_held``, or in one of SQLAlchemy's), ``_read``
a read (on PostgreSQL, with its lock waits bounded). Every database error
is :class:`~flask_hooks.core.errors.StoreUnavailable` (a 503).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ..core.errors import StoreUnavailable
from ._sql_engine import (
    BOUNDED_DRIVERS,
    DOWN,
    ConnectionLost,
    build_engine,
    in_autocommit,
    in_transaction,
    timeout_of,
    unavailable,
)
from ._sql_held import DRIVERS, HeldConnections
from ._sql_rendered import Cursor, Statements
from ._sql_schema import metadata, missing_columns
from .base import fork_lock, process_generation

T = TypeVar("T")
log = logging.getLogger("flask_hooks")

#: Per pooled connection: what the store's transactions on it set first (PostgreSQL), if anything.
_SET_LOCAL = "flask_hooks.set_local"
#: The two settings the store needs of a connection (read once per connection), and how many
#: of them the client's connect options set (not a role's or database's).
_SETTINGS = sa.text(
    "SELECT current_setting('lock_timeout'), current_setting('synchronous_commit'),"
    " (SELECT count(*) FROM pg_settings WHERE name IN ('lock_timeout', 'synchronous_commit')"
    " AND source = 'client')"
)

#: What the store's transactions on an engine built here start with, on pg8000.
_READ_COMMITTED = sa.text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")

#: What every write transaction on SQLite starts with (see :meth:`Connections._lock_writes`).
_BEGIN_IMMEDIATE = sa.text("BEGIN IMMEDIATE")

#: ``pg_advisory_xact_lock`` key serialising the creation of the tables across processes.
_SCHEMA_LOCK = 0x666C61736B686F6B


class Connections:
    """The engine a SQL store writes to and reads from, and its transactions.

    ``bind`` is an Engine, a URL or Flask-SQLAlchemy's ``db``; ``timeout``
    bounds the waits (see :class:`~flask_hooks.stores.sql.SqlStore`).
    """

    def __init__(self, bind: Engine | str | URL | Any, *, timeout: float) -> None:
        if isinstance(bind, (str, URL)):
            bind, timeout = timeout_of(bind, timeout)
        if not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
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
        #: Those of them whose connections are in autocommit (``isolation_level="AUTOCOMMIT"``).
        self._autocommit: set[Engine] = set()
        #: The connections held out of the pool of the engine built here (PostgreSQL).
        self._held: HeldConnections | None = None
        #: ``_held`` once there is one, for the finalizer, which must not refer to the store.
        self._holding: list[HeldConnections] = []
        if self._owned and self._engine_given is not None:
            # A store dropped without close() (an app per test) leaves its connections to the
            # garbage collector, which warns for each (ResourceWarning: pytest -W error fails).
            self._finalizer = weakref.finalize(self, _dispose, self._engine_given, self._holding, os.getpid())
        self._schema_lock = threading.Lock()
        self._generation = process_generation()
        self._lock_timeout = f"set_config('lock_timeout', '{max(1, round(timeout * 1000))}', true)"

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
                schemas = engine.get_execution_options().get("schema_translate_map")
                statements = Statements(engine.dialect, schemas)
                try:
                    with engine.connect() as conn:
                        if in_autocommit(conn):
                            self._autocommit.add(engine)
                        with in_transaction(conn).begin(), Cursor(conn, statements) as cursor:
                            if self._bounded:  # first: the waits below are bounded either way
                                self._bounded = self._options_applied(cursor)
                            self._lock_writes(cursor)  # first: the wait for the lock below is bounded too
                            if conn.dialect.name == "postgresql":  # workers racing at start-up
                                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                            metadata.create_all(conn, checkfirst=True)
                            missing = missing_columns(conn, schemas)
                except DOWN as exc:
                    raise StoreUnavailable() from exc
                if missing:  # nothing claimed that could not be completed; asked again next time
                    why = f"the SQL store's tables lack {', '.join(missing)}: migrate them (see the docs)"
                    raise StoreUnavailable() from RuntimeError(why)
                if self._bounded and engine.dialect.driver in DRIVERS:
                    # Its connect options bound lock waits: no _lock_writes (SET LOCAL) needed.
                    self._held = HeldConnections(engine, statements)
                    self._holding.append(self._held)
                self._ready[engine] = statements
        return engine, statements

    def _options_applied(self, cursor: Cursor) -> bool:
        """Whether the connect options of the engine built here reached the server: PgBouncer
        drops them with ``ignore_startup_parameters = options``. If not, the store's
        transactions set their bounds themselves, on connections of the pool's."""
        lock, commit, given = cursor.row(_SETTINGS, {})
        if given == 2 and lock != "0" and commit != "off":  # the URL's own options may undo ours
            return True
        log.warning("the SQL store's connect options did not reach the server (a pooler drops them?):"
                    " its transactions bound their lock waits and commits themselves")  # fmt: skip
        return False

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
            if self._owned and conn.dialect.driver not in BOUNDED_DRIVERS:
                # pg8000's isolation_level is a session setting, which a pooler would share:
                # read committed per transaction, before any query (see build_engine).
                cursor.run(_READ_COMMITTED, {})
            # An engine given may bound lock waits itself (in its connect options), and commit
            # asynchronously (a DBA's synchronous_commit=off: a 200, then the record lost in a
            # crash). Asked once per connection; only those that need it pay a statement per
            # transaction, which sets what it must for the transaction only.
            info = conn.connection.info
            if _SET_LOCAL not in info:
                lock, commit, _ = cursor.row(_SETTINGS, {})
                ours = self._owned  # an engine built here (pg8000, or its options lost): its own bound
                needed = [self._lock_timeout] if lock == "0" or ours else []
                needed += ["set_config('synchronous_commit', 'on', true)"] if commit == "off" else []
                info[_SET_LOCAL] = sa.text(f"SELECT {', '.join(needed)}") if needed else None
            local = info[_SET_LOCAL]
            if local is not None:
                cursor.run(local, {})

    def _write(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(cursor, *args, **kwargs)`` in one write transaction (on a held connection, its
        statements before ``cursor.begin()`` each commit by itself); database errors are a 503.

        A connection that broke (the server restarted or ended the session while the store
        was not using it, the network failed) fails at its next statement: the work is tried
        once more, on another connection. A 503 there, after a handler ran, would have it run
        again at the sender's retry. A step that did commit before its answer was lost is
        recognised by its token (a claim, a replay's, a completion: see ``SqlStore``) or
        changes nothing the second time (a renewal, a record of success); the delivery log's
        lines, best effort, are not tried again (``_write_once``).
        """
        try:
            return self._write_once(work, *args, **kwargs)
        except ConnectionLost:
            return self._write_once(work, *args, **kwargs)

    def _write_once(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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
            with engine.connect() as conn, in_transaction(conn).begin(), Cursor(conn, statements) as cursor:
                self._lock_writes(cursor)
                return work(cursor, *args, **kwargs)
        except DOWN as exc:
            raise unavailable(exc) from exc

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
        (a migration may hold the tables), rolled back at the end; tried once more on another
        connection if the one it took broke."""
        try:
            return self._read_once(work, *args)
        except ConnectionLost:
            return self._read_once(work, *args)

    def _read_once(self, work: Callable[..., T], *args: Any) -> T:
        engine, statements = self._prepared()
        self._lend()
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "postgresql" and not self._bounded:
                    in_transaction(conn).begin()  # the SET LOCAL goes through the driver's cursor: begun here
                    with Cursor(conn, statements) as cursor:
                        self._lock_writes(cursor)
                return work(conn, *args)
        except DOWN as exc:
            raise unavailable(exc) from exc

    def close(self) -> None:
        """Dispose of the engine this store built from a URL (an engine or db given stays open)."""
        self._check_fork()  # a forked child closes none of its parent's connections
        if self._owned and self._engine_given is not None:
            self._finalizer.detach()
            _dispose(self._engine_given, self._holding, os.getpid())


def _dispose(engine: Engine, holding: list[HeldConnections], pid: int) -> None:
    """Close the connections of an engine a store built, held ones included; in a process
    forked since, none (they are its parent's: ``_forked``)."""
    if os.getpid() == pid:
        for held in holding:
            held.close()
        engine.dispose()
