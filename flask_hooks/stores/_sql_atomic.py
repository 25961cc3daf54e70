"""``atomic=True`` handlers on the SQL store: the handler's writes and its mark in one transaction.

:meth:`SqlStore.atomic <flask_hooks.stores.sql.SqlStore.atomic>` runs
:func:`atomically` in ``db.session``'s transaction (Flask-SQLAlchemy) or in
a connection of its own, which :func:`connection` gives the handler.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import weakref
from collections.abc import Callable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ..core.errors import LeaseLost, StoreUnavailable
from ._sql_engine import DOWN, in_autocommit
from ._sql_rendered import Cursor, Statements
from .base import Reply

log = logging.getLogger("flask_hooks")

#: The open connection of the running ``atomic=True`` handler (see :func:`connection`).
_current: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "flask_hooks_sql_connection", default=None
)


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


class Transaction(NamedTuple):
    """The transaction a handler runs in: ``db.session``'s, or that of a connection."""

    connection: Callable[[], Connection]
    flush: Callable[[], None]
    commit: Callable[[], None]
    rollback: Callable[[], None]
    #: The ``Session`` whose transaction it is, if one is (its next one may use another connection).
    session: Session | None = None
    #: Where that session comes from (``db.session``), if it may be replaced: a handler's
    #: ``db.session.remove()`` makes the next use another ``Session``, the handler's all the same.
    sessions: Callable[[], Session] | None = None


def atomically(
    tx: Transaction,
    statements: Statements,
    begin: Callable[[Cursor], None],
    run: Callable[[], Reply | None],
    mark: Callable[[Cursor, Reply | None], None],
) -> Reply | None:
    """``begin``, ``run``, then ``mark`` its reply and commit; roll back on any failure.

    :class:`LeaseLost` from the mark and an exception from ``run`` propagate,
    as does a database error at the mark or the commit that the handler's
    writes caused (a database that went away is :class:`StoreUnavailable`).
    """
    try:
        if in_autocommit(tx.connection()):  # db.session was in use, in autocommit, before the store began
            _quietly(tx.rollback)
            raise HandlerInAutocommit()
        started = _begun(tx, statements, begin)
    except StoreUnavailable:
        _quietly(tx.rollback)
        raise
    except DOWN as exc:
        _quietly(tx.rollback)
        raise StoreUnavailable() from exc
    reset = _current.set(tx.connection())
    guard = _NoCommit(tx.connection(), tx.session, tx.sessions)
    try:
        with guard:
            reply = run()
        if guard.refused:  # and the handler caught the error: its writes must still not commit
            raise HandlerCommitted()
        tx.flush()  # the handler's pending ORM writes are the handler's: their errors are its own
    except BaseException as exc:
        _quietly(tx.rollback)
        if _disconnected(exc):
            raise StoreUnavailable() from exc
        raise  # its own statements' errors too (no such table, a deadlock): a 500, logged
    finally:
        _current.reset(reset)
    if _aborted(tx.connection()):
        _quietly(tx.rollback)
        raise HandlerLeftTransactionFailed()
    try:
        if tx.connection().get_transaction() is not started:
            # The handler ended it (a rollback, "already done"): what it wrote since, and the
            # mark, are another transaction, which nothing else would commit on a connection.
            _begun(tx, statements, begin)
        with Cursor(tx.connection(), statements) as cursor:
            mark(cursor, reply)
        tx.commit()
    except (LeaseLost, StoreUnavailable):
        _quietly(tx.rollback)
        raise
    except DOWN as exc:
        _quietly(tx.rollback)
        if _unreachable(exc):
            raise StoreUnavailable() from exc
        # The handler's writes failed at COMMIT (a deferred constraint): its failure, a 500.
        raise
    return reply


class HandlerLeftTransactionFailed(RuntimeError):
    """The handler caught a database error and returned: its transaction is aborted
    (PostgreSQL), so neither its writes nor its mark can commit. The handler's failure,
    a 500 the sender retries, not an unavailable store."""

    def __init__(self) -> None:
        super().__init__(
            "the atomic handler returned with its transaction aborted by a database error it"
            " caught; let the error propagate, or catch it around a SAVEPOINT"
            " (with connection().begin_nested(): ...)"
        )


def _begun(tx: Transaction, statements: Statements, begin: Callable[[Cursor], None]) -> object:
    """Begin ``tx``'s transaction, if nothing has, with ``begin``'s statements; that transaction."""
    conn = tx.connection()
    if not conn.in_transaction():
        conn.begin()
    with Cursor(conn, statements) as cursor:
        begin(cursor)
    return conn.get_transaction()


class HandlerInAutocommit(RuntimeError):
    """The session of an atomic handler is in autocommit (an engine made with
    ``isolation_level="AUTOCOMMIT"``) and was used before the handler began, so the store
    could not take it out: each of its writes would commit by itself, without the record of
    its success. Refused before the handler runs: a 500, and nothing is written."""

    def __init__(self) -> None:
        super().__init__(
            "an atomic=True handler's db.session is in autocommit (isolation_level='AUTOCOMMIT') and"
            " was in use before the handler began: its writes cannot commit with the record of its"
            " success. Give db.session an engine with transactions, or leave it unused until then"
        )


class HandlerCommitted(RuntimeError):
    """The handler tried to commit the transaction it runs in (``db.session.commit()``,
    ``connection().commit()``): its writes would commit without the record of its success,
    and run again on a retry. Refused: the handler's failure, a 500, and nothing commits."""

    def __init__(self) -> None:
        super().__init__(
            "an atomic=True handler must not commit: the store commits its writes together with"
            " the record of its success (use a SAVEPOINT, connection().begin_nested(), for a part"
            " that may fail)"
        )


class _NoCommit:
    """While the handler runs, a COMMIT of its connection, or of its session whichever
    connection that is on by then, raises :class:`HandlerCommitted` before it reaches the
    database (SQLAlchemy's ``commit`` and ``before_commit`` events precede the driver's).

    The listeners are registered once per engine and session class: one per handler run
    would cost more than the handler's own statements."""

    def __init__(
        self, conn: Connection, session: Session | None, sessions: Callable[[], Session] | None = None
    ) -> None:
        self.conn = conn
        self.session = session
        self.sessions = sessions
        #: The scope (Flask-SQLAlchemy: the app context) whose ``db.session`` is the handler's.
        self.scope = _scope(sessions)
        self.refused = False
        #: Connections the session began a transaction on while the handler ran (after a rollback).
        self.adopted: list[Connection] = []
        _watch(conn.engine, "commit", _refuse)
        if session is not None:
            _watch(type(session), "before_commit", _refuse)
            _watch(type(session), "after_begin", _adopt)
        if conn.dialect.name == "sqlite":
            _watch(conn.engine, "savepoint", _begin_first)

    def handlers(self, session: object) -> bool:
        """Whether ``session`` is the handler's: the one it began with, or the one ``db.session``
        gives now in the handler's own scope (after its ``db.session.remove()``), never one
        of an app context the handler pushed, and never made by asking."""
        if session is self.session:
            return True
        registry = getattr(self.sessions, "registry", None)
        if registry is None or self.scope is None or _scope(self.sessions) != self.scope:
            return False
        return bool(registry.has()) and session is registry()

    def owns(self, conn: Connection) -> bool:
        """Whether ``conn`` is the handler's: its first, or one its session began on since."""
        return conn is self.conn or any(conn is each for each in self.adopted)

    def __enter__(self) -> None:
        self._reset = _guarded.set(self)

    def __exit__(self, *exc_info: object) -> None:
        _guarded.reset(self._reset)


#: The guard of the atomic handler running in this context, if one is.
_guarded: contextvars.ContextVar[_NoCommit | None] = contextvars.ContextVar(
    "flask_hooks_sql_no_commit", default=None
)


#: The events listened to, by engine or session class. Not ``sa.event.contains``: it goes by
#: ``id()``, so a session class made after one collected at the same address (each
#: Flask-SQLAlchemy ``db`` has its own) looked watched and was not.
_watched: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()
_watching = threading.Lock()


def _watch(target: object, name: str, listener: Callable[..., None]) -> None:
    if name not in _watched.get(target, ()):
        with _watching:
            if name not in _watched.get(target, ()):
                sa.event.listen(target, name, listener)
                _watched.setdefault(target, set()).add(name)


def _scope(sessions: object) -> object:
    """The current scope of a ``scoped_session`` registry (None: none, or no scope now)."""
    scopefunc = getattr(getattr(sessions, "registry", None), "scopefunc", None)
    if scopefunc is None:
        return None
    try:
        return scopefunc()
    except RuntimeError:  # Flask-SQLAlchemy's, outside an app context
        return None


def _adopt(session: Session, transaction: object, conn: Connection) -> None:
    """The atomic handler's session began a transaction on ``conn``: the handler's too."""
    guard = _guarded.get()
    if guard is not None and guard.handlers(session):
        guard.adopted.append(conn)
        _watch(conn.engine, "commit", _refuse)  # another bind's engine, too
        if conn.dialect.name == "sqlite":
            _watch(conn.engine, "savepoint", _begin_first)


def _begin_first(conn: Connection, name: str) -> None:
    """Before an atomic handler's SAVEPOINT on SQLite, the write transaction it belongs in.

    After the handler's own ``rollback()``, pysqlite opens no transaction for
    a SAVEPOINT, and SQLite then takes it as one: its RELEASE committed the
    handler's writes by themselves, again on every retry.
    """
    guard = _guarded.get()
    if guard is None or not guard.owns(conn):  # another connection's savepoint is its own
        return
    raw = conn.connection.dbapi_connection
    if raw is not None and not getattr(raw, "in_transaction", True):
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except DOWN as exc:  # the store's lock wait, as at the handler's start: a 503
            raise StoreUnavailable() from exc


def _refuse(target: object) -> None:
    """A commit in the context of an atomic handler, of its own connection or session.

    A savepoint's release (``db.session.begin_nested()``, which fires the session's
    ``before_commit`` too) commits nothing: it is what a handler should use."""
    guard = _guarded.get()
    if guard is None:
        return
    if (isinstance(target, Connection) and guard.owns(target)) or (
        guard.handlers(target) and not _nested(target)
    ):
        guard.refused = True
        raise HandlerCommitted()


def _nested(session: object) -> bool:
    return isinstance(session, Session) and session.in_nested_transaction()


#: libpq's PQTRANS_INERROR: in a transaction that an error aborted (psycopg 2 and 3 alike).
_INERROR = 3


def _aborted(conn: Connection) -> bool:
    """Whether PostgreSQL aborted the transaction (``current transaction is aborted``)."""
    try:
        raw = conn.connection.dbapi_connection
    except DOWN:
        return False  # gone: the mark finds out, and says so
    status = getattr(getattr(raw, "info", None), "transaction_status", None)  # psycopg 3
    legacy = getattr(raw, "get_transaction_status", None)  # psycopg 2
    if status is None and legacy is not None:
        status = legacy()
    return status is not None and int(status) == _INERROR


def _unreachable(exc: BaseException) -> bool:
    """The database went away or timed out (not the handler's own mistake): a 503."""
    if isinstance(exc, DBAPIError) and bool(exc.connection_invalidated):
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


def _disconnected(exc: BaseException) -> bool:
    """The database went away under the handler (SQLAlchemy saw a disconnect): a 503.

    Narrower than :func:`_unreachable`: a handler's own statement that fails
    is an ``OperationalError`` too (SQLite's "no such table", PostgreSQL's
    deadlock or lock timeout), and a 503 hid that bug on every retry, unlogged.
    """
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _quietly(rollback: Callable[[], None]) -> None:
    try:
        rollback()
    except DOWN:
        log.debug("rollback failed (the connection is gone; so is the transaction)", exc_info=True)
