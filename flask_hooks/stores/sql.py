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
statement each (see ``_sql_held``). Which engine is in use, its write and
read transactions and the creation of the tables are in ``_sql_conn``;
here, the state machine, the delivery log, the inbox and atomic handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from ..core.attempts import cause_line
from ..core.errors import InFlight, StoreUnavailable
from ..core.inbox import Kept, Stored
from . import _sql_writes as writes
from ._sql_atomic import Transaction, atomically
from ._sql_atomic import connection as connection
from ._sql_conn import _SCHEMA_LOCK as _SCHEMA_LOCK
from ._sql_conn import Connections
from ._sql_engine import DOWN, ConnectionLost, in_transaction, sqlstate, transaction_level
from ._sql_rendered import Cursor
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
    lease_is_live,
    new_token,
    takes_turn,
)
from .url import masked_url

__all__ = ["SqlStore", "connection", "metadata"]

log = logging.getLogger("flask_hooks")


#: A receiver's log is trimmed to ``log_size`` after about one in this many of its lines,
#: and its rows past their retention are swept (a bounded batch) after one in the other.
_TRIM_EVERY = 64
_SWEEP_EVERY = 256
_SWEEP_BATCH = 500

#: Whether another session holds the delivery log's table in a mode that blocks its INSERTs.
_LOG_LOCKED = sa.text(
    "SELECT 1 FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation"
    f" WHERE pg_class.relname = '{log_table.name}' AND granted AND pid <> pg_backend_pid()"
    " AND mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')"
)


class SqlStore(Connections, DedupeStore):
    """The store in a SQL database, through SQLAlchemy Core.

    ``bind`` is an Engine, a URL, or Flask-SQLAlchemy's ``db`` (whose
    ``db.engine`` and ``db.session`` are used per app, so they need an app
    context, as requests and CLI commands have). An engine built here from
    a URL pings a connection that sat idle in its pool before using it (so
    it survives a restarted server) and, on PostgreSQL, bounds connecting and lock waits by ``timeout``
    seconds and statements by six times that; ``close()`` disposes it.
    An engine or ``db`` given is the app's: configure those bounds there
    (see the docs), the store only bounds its own lock waits.
    """

    supports_atomic = True

    def __init__(self, bind: Engine | str | URL | Any, *, log_size: int = 1000, timeout: float = 5.0) -> None:
        super().__init__(bind, timeout=timeout)
        self.log_size = log_size

    def __repr__(self) -> str:
        if self._engine_given is None:  # Flask-SQLAlchemy's repr shows a ?password= in its URL
            return f"<SqlStore {type(self._db).__name__}>"
        # masked_url too: a password in the query (?password=) or one with an '@' in it,
        # which SQLAlchemy's own hiding leaves in sight.
        return f"<SqlStore {masked_url(self._engine_given.url.render_as_string(hide_password=True))}>"

    # The state machine.

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        return self._write(writes.claim, ns, id, new_token(), now, lease, ttl, keep)

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
        # The token stays: a completion tried again (its connection broke) knows its own.
        done = {"state": "done", "token": token, "lease_until": 0.0, "expires_at": now + ttl}
        done.update(reply=encode_reply(reply), outcome=outcome, status=outcome)
        self._finish(ns, id, token, done, entry, now, fenced=True)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        free = {"state": "free", "token": token, "lease_until": 0.0, "status": "failed"}
        self._finish(ns, id, token, free, entry, now, fenced=False)

    def _finish(
        self,
        ns: str,
        id: str,
        token: str,
        values: dict[str, Any],
        entry: LogEntry | None,
        now: float,
        *,
        fenced: bool,
    ) -> None:
        """A completion or release, and its log line. The log is for operators: a line its
        table refuses (locked by a VACUUM FULL or a migration, its INSERT not granted, a
        column missing) must not fail the record, or the handler would run at every retry."""
        def finish(logged: bool = True) -> int:
            step = (writes.finish, ns, id, token, values, entry)
            try:
                return self._write_once(*step, fenced=fenced, logged=logged)
            except ConnectionLost:  # as _write does, but its first try may have committed
                return self._write_once(*step, fenced=fenced, logged=logged, again=True)

        try:
            seq = finish()
        except StoreUnavailable as exc:
            if entry is None or not self._log_refused(exc):
                raise
            seq = finish(logged=False)
            log.warning("delivery log refused %s's line%s; recorded without it", id, cause_line(exc))
        self._maintain(ns, seq, now)

    def _log_refused(self, exc: StoreUnavailable) -> bool:
        """Whether the log's table, not the record's, refused a completion or release: a
        statement refused outright (a privilege or a column missing, SQLSTATE class 42), or a
        lock wait while another session holds the log's table (not a delivery's row, which
        the record would wait for again)."""
        code = sqlstate(exc.__cause__)
        if code is None or not (code.startswith("42") or code == "55P03"):
            return False
        return code != "55P03" or self._read(lambda conn: conn.execute(_LOG_LOCKED).first() is not None)

    # The delivery log.

    def log(self, ns: str, entry: LogEntry) -> None:
        # As of when it was received: a line logged on its own (every duplicate's) takes its
        # turn at the sweep too, or completions that each follow one might never take theirs.
        # Not tried again on a broken connection: its line may have committed (the log is
        # best effort: a 503 here changes no answer).
        self._maintain(ns, self._write_once(writes.append, ns, entry), entry.received_at or 0.0)

    def _maintain(self, ns: str, seq: int, now: float) -> None:
        """Now and then, trim the log and sweep expired rows: best effort, in their own transactions."""
        try:
            if takes_turn(seq, ns, _TRIM_EVERY):
                self._core(lambda conn: conn.execute(trim_log(ns, self.log_size)))
            if takes_turn(seq, ns, _SWEEP_EVERY) and now:
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
        return self._write(writes.reopen, ns, id, new_token(), now, lease, frozenset(rerun), frozenset(keep))

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

    def _begin_session(self, engine: Engine, session: Session) -> None:
        """Begin ``session``'s transaction (its autobegin may be off: ``autobegin=False``), on a
        connection out of autocommit if its engine's are in it (:func:`atomically` refuses one
        that is)."""
        try:
            session.begin()
            if engine in self._autocommit:
                session.connection(execution_options={"isolation_level": transaction_level(engine.dialect)})
        except DOWN as exc:
            raise StoreUnavailable() from exc

    def atomic(
        self, ns: str, id: str, token: str, handler: str, run: Callable[[], Reply | None], *, now: float
    ) -> Reply | None:
        """Run ``run`` and record ``handler``'s success in one transaction, fenced by ``token``.

        The mark is the transaction's last statement before COMMIT: when the
        claim was taken over meanwhile (the lease ran out and another worker
        claimed it), nothing matches, everything rolls back, and
        :class:`LeaseLost` is raised. An exception from ``run`` rolls back
        and propagates (a database that went away becomes
        :class:`~flask_hooks.StoreUnavailable`). With ``SqlStore(db)`` the transaction
        is ``db.session``'s; otherwise :func:`connection` gives it.
        """
        engine, statements = self._prepared()

        def mark(cursor: Cursor, reply: Reply | None) -> None:
            writes.mark(cursor, ns, id, token, handler, reply)

        if self._db is not None:
            session = self._db.session
            if not session().in_transaction():
                self._begin_session(engine, session())
            tx = Transaction(
                session.connection, session.flush, session.commit, session.rollback, session(), session
            )
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
                in_transaction(conn).begin()
            except DOWN as exc:
                raise StoreUnavailable() from exc
            tx = Transaction(lambda: conn, lambda: None, conn.commit, conn.rollback)
            return atomically(tx, statements, self._lock_writes, run, mark)
