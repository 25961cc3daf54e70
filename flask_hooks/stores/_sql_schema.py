"""The SQL store's tables, what each of its transactions does, and the engine it builds.

Kept apart from :mod:`flask_hooks.stores.sql` (the store: engines,
transactions, errors, atomic handlers) so the schema and the statements
read in one place; import :data:`metadata` from there
(``flask_hooks.stores.sql.metadata``) for Alembic. Every function taking a
``conn`` runs inside the store's write transaction, and reads a row it may
change ``FOR UPDATE`` (ignored by SQLite, where the transaction already
holds the write lock).

Times are seconds since the epoch as double precision, like every store's
``now``. The JSON columns (``handlers``, ``reply``, ``headers``,
``attempts``) hold the core's versioned records; ``body`` is the exact
bytes as received.
"""

from __future__ import annotations

import importlib.util
import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..core.errors import LeaseLost, StoreUnavailable
from ..core.inbox import (
    Kept,
    Stored,
    bounded,
    decode_attempts,
    decode_headers,
    encode_attempts,
    encode_headers,
    like_prefix,
    type_like,
)
from .base import (
    Claim,
    LogEntry,
    Reply,
    decode_handlers,
    decode_reply,
    encode_handlers,
    lease_is_live,
    new_token,
)

#: The store's tables, for ``metadata.create_all`` and Alembic's autogenerate.
metadata = sa.MetaData()

#: Delivery ids and namespaces: unbounded text where the database indexes it, else 255.
_KEY = sa.String(255).with_variant(sa.Text(), "postgresql", "sqlite")
_TIME: sa.Double[float] = sa.Double()

deliveries = sa.Table(
    "flask_hooks_deliveries",
    metadata,
    sa.Column("ns", _KEY, primary_key=True),
    sa.Column("id", _KEY, primary_key=True),
    # The claim: "inflight" (token, lease_until), "done" (reply, outcome) or "free" (released).
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False, server_default=""),
    sa.Column("lease_until", _TIME, nullable=False, server_default="0"),
    #: Until when the record counts as a duplicate (the dedupe TTL, or the lease).
    sa.Column("expires_at", _TIME, nullable=False),
    #: Until when the row is kept at all: the inbox's retention, never before ``expires_at``.
    sa.Column("retained_until", _TIME, nullable=False),
    sa.Column("handlers", sa.Text(), nullable=False, server_default="{}"),
    sa.Column("reply", sa.Text(), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False, server_default=""),
    # The inbox: the status as last written, and the delivery as kept (NULL when not kept).
    sa.Column("status", sa.String(16), nullable=False, server_default="in-flight"),
    sa.Column("type", sa.Text(), nullable=True),
    sa.Column("body", sa.LargeBinary(), nullable=True),
    sa.Column("headers", sa.Text(), nullable=True),
    sa.Column("received_at", _TIME, nullable=True),
    sa.Column("secret_index", sa.Integer(), nullable=True),
    sa.Column("attempts", sa.Text(), nullable=False, server_default=""),
)

log = sa.Table(
    "flask_hooks_log",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # the rowid on SQLite
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("ns", _KEY, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("entry", sa.Text(), nullable=False),
)

d = deliveries
# The purge and the periodic sweep: rows past their retention.
sa.Index("flask_hooks_deliveries_retention", d.c.retained_until)
# The inbox's list: newest first, keyset-paged on (received_at, id).
sa.Index("flask_hooks_deliveries_received", d.c.ns, d.c.received_at.desc(), d.c.id.desc())
sa.Index("flask_hooks_deliveries_status", d.c.ns, d.c.status, d.c.received_at)
sa.Index("flask_hooks_log_ns", log.c.ns, log.c.seq)


def key(ns: str, id: str) -> sa.ColumnElement[bool]:
    return sa.and_(d.c.ns == ns, d.c.id == id)


def owned(ns: str, id: str, token: str) -> sa.ColumnElement[bool]:
    """The row, if the claim with ``token`` still holds it."""
    return sa.and_(d.c.ns == ns, d.c.id == id, d.c.state == "inflight", d.c.token == token)


def at_least(column: sa.ColumnElement[float], value: float) -> sa.ColumnElement[float]:
    """``max(column, value)`` in any dialect (SQLite's ``max``, PostgreSQL's ``GREATEST``)."""
    return sa.case((column > value, column), else_=sa.literal(value, sa.Double()))


def insert_new(conn: Connection, values: dict[str, Any]) -> bool:
    """INSERT the (ns, id) row unless it exists (the claim's fast path); whether it was new."""
    name = conn.dialect.name
    statement = _INSERT_NEW.get(name)
    if statement is None and name in ("postgresql", "sqlite", "mysql", "mariadb"):
        statement = _INSERT_NEW[name] = _insert_new(name)
    if statement is None:  # others: a SAVEPOINT catches the conflict
        try:
            with conn.begin_nested():
                conn.execute(d.insert(), values)
        except IntegrityError:
            return False
        return True
    return conn.execute(statement, values).rowcount == 1


def _insert_new(name: str) -> sa.Insert:
    """The dialect's INSERT that does nothing on a conflict (its driver imported on first use)."""
    statement: sa.Insert
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(d).on_conflict_do_nothing()
    elif name == "sqlite":
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(d).on_conflict_do_nothing()
    else:
        statement = d.insert().prefix_with("IGNORE")
    # An INSERT's rowcount is kept only when asked for (SQLAlchemy 2.0.28+).
    return statement.execution_options(preserve_rowcount=True)


def kept_values(keep: Kept | None) -> dict[str, Any]:
    """The columns of a delivery kept for the inbox."""
    if keep is None:
        return {}
    return {
        "type": keep.type,
        "body": keep.body,
        "headers": encode_headers(keep.headers),
        "received_at": keep.received_at,
        "secret_index": keep.secret_index,
    }


def stored(row: Any) -> Stored:
    """A kept row as the inbox reads it."""
    return Stored(
        row.id,
        row.type,
        bytes(row.body),
        decode_headers(row.headers),
        row.received_at,
        row.secret_index,
        row.status,
        row.lease_until if row.state == "inflight" else 0.0,
        decode_handlers(row.handlers),
        decode_attempts(row.attempts),
    )


def inbox_query(
    ns: str,
    now: float,
    status: str | None,
    type: str | None,
    since: float | None,
    until: float | None,
    before: tuple[float, str] | None,
    limit: int,
) -> sa.Select[Any]:
    """Kept deliveries newest first, filtered as :meth:`DedupeStore.query` says."""
    query = sa.select(d).where(d.c.ns == ns, d.c.received_at.is_not(None))
    if status == "failed":  # as of now: a claim whose lease ran out (its worker died) failed
        query = query.where(
            sa.or_(d.c.status == "failed", sa.and_(d.c.status == "in-flight", d.c.lease_until <= now))
        )
    elif status == "in-flight":
        query = query.where(d.c.status == "in-flight", d.c.lease_until > now)
    elif status is not None:
        query = query.where(d.c.status == status)
    exact, prefix = type_like(type)
    matching = [] if exact is None else [d.c.type == exact]
    if prefix is not None:
        matching.append(d.c.type.like(like_prefix(prefix), escape="\\"))
    if matching:
        query = query.where(sa.or_(*matching))
    if since is not None:
        query = query.where(d.c.received_at >= since)
    if until is not None:
        query = query.where(d.c.received_at < until)
    if before is not None:
        at, last = before
        query = query.where(sa.or_(d.c.received_at < at, sa.and_(d.c.received_at == at, d.c.id < last)))
    return query.order_by(d.c.received_at.desc(), d.c.id.desc()).limit(max(0, limit))


def purgeable(ns: str, now: float, received_before: float | None) -> sa.ColumnElement[bool]:
    """Rows past their retention (or received before ``received_before``), never one in flight."""
    due = [d.c.retained_until <= now]
    if received_before is not None:
        due.append(sa.and_(d.c.received_at.is_not(None), d.c.received_at < received_before))
    return sa.and_(
        d.c.ns == ns, sa.not_(sa.and_(d.c.state == "inflight", d.c.lease_until > now)), sa.or_(*due)
    )


def trim_log(ns: str, size: int) -> sa.Delete:
    """Delete a receiver's log lines but the newest ``size``."""
    oldest_kept = (
        sa.select(log.c.seq).where(log.c.ns == ns).order_by(log.c.seq.desc()).offset(size).limit(1)
    ).scalar_subquery()
    return log.delete().where(log.c.ns == ns, log.c.seq <= oldest_kept)


# What each write transaction of the store does (``SqlStore._write`` runs them).
#
# Their statements are built once, with the row's key as bound parameters and the values
# given at execution: building a statement per call, and its cache key, cost more CPU
# than the round trip it makes. An ``update()`` executed with ``{column: value}`` sets
# those columns; each set of columns is compiled once, then cached by the engine.

#: ``WHERE ns = :b_ns AND id = :b_id``.
_KEYED = sa.and_(d.c.ns == sa.bindparam("b_ns"), d.c.id == sa.bindparam("b_id"))
#: The row, while the claim with ``:b_token`` holds it.
_OWNED = sa.and_(_KEYED, d.c.state == "inflight", d.c.token == sa.bindparam("b_token"))
#: ``{column: value}`` at execution; and the dialect's conflict-free INSERT, by dialect.
_UPDATE = d.update().where(_KEYED)
_INSERT_NEW: dict[str, sa.Insert] = {}

#: What a claim or a replay reads of an existing row (not the body).
_STATE = [d.c[name] for name in ("state", "lease_until", "expires_at", "retained_until", "handlers")]
_STATE += [d.c.reply, d.c.outcome, d.c.received_at]
_READ_STATE = sa.select(*_STATE).where(_KEYED).with_for_update()
_READ_HANDLERS = sa.select(d.c.handlers).where(_OWNED).with_for_update()
_READ_FINISH = (
    sa.select(d.c.state, d.c.token, d.c.retained_until, d.c.received_at, d.c.attempts)
    .where(_KEYED)
    .with_for_update()
)
_READ_ATTEMPTS = sa.select(d.c.attempts).where(_KEYED, d.c.received_at.is_not(None)).with_for_update()
_APPEND = log.insert()
#: Release, or complete, a claim whose delivery has no attempt recorded yet (the usual
#: case) in one statement: the attempt is then the first, if the delivery is kept.
_RELEASE_FIRST = (
    d.update()
    .where(_OWNED, d.c.attempts == "")
    .values(attempts=sa.case((d.c.received_at.is_(None), d.c.attempts), else_=sa.bindparam("b_attempts")))
)
_COMPLETE_FIRST = _RELEASE_FIRST.values(
    retained_until=sa.case(
        (d.c.retained_until > sa.bindparam("b_expires", type_=sa.Double()), d.c.retained_until),
        else_=sa.bindparam("b_expires", type_=sa.Double()),
    )
)


def _key(ns: str, id: str) -> dict[str, Any]:
    return {"b_ns": ns, "b_id": id}


def claim(
    conn: Connection, ns: str, id: str, now: float, lease: float, ttl: float, keep: Kept | None
) -> Claim:
    token = new_token()
    expires = now + max(ttl, lease)
    retained = max(expires, now + keep.retention) if keep is not None else expires
    fields = {"state": "inflight", "token": token, "lease_until": now + lease, "expires_at": expires}
    kept = kept_values(keep)
    new = {"ns": ns, "id": id, **fields, "retained_until": retained, "status": "in-flight", **kept}
    for _ in range(3):  # a row deleted between the two statements (forget, purge): insert again
        if insert_new(conn, new):
            return Claim("new", token)  # the usual case, a delivery never seen
        row = conn.execute(_READ_STATE, _key(ns, id)).first()
        if row is not None:
            break
    else:
        raise StoreUnavailable()
    if row.expires_at <= now:
        handlers = "{}"  # an expired record starts afresh
    elif row.state == "done":
        return Claim("done", reply=decode_reply(row.reply), outcome=row.outcome)
    elif row.state == "inflight" and lease_is_live(row.lease_until, now, lease):
        return Claim("inflight", retry_after=row.lease_until - now)
    else:
        handlers = row.handlers
    values = {**fields, "retained_until": max(row.retained_until, retained), "handlers": handlers}
    values.update(reply=None, outcome="", status="in-flight", **(kept if row.received_at is None else {}))
    conn.execute(_UPDATE, {**values, **_key(ns, id)})  # a retry keeps the first copy
    return Claim("new", token, decode_handlers(handlers))


def mark(conn: Connection, ns: str, id: str, token: str, handler: str, reply: Reply | None) -> None:
    """Fenced by the token; the row stays locked until the transaction ends."""
    row = conn.execute(_READ_HANDLERS, {**_key(ns, id), "b_token": token}).first()
    if row is None:
        raise LeaseLost()
    handlers = decode_handlers(row.handlers)
    handlers[handler] = reply
    conn.execute(_UPDATE, {"handlers": encode_handlers(handlers), **_key(ns, id)})


def finish(
    conn: Connection,
    ns: str,
    id: str,
    token: str,
    values: dict[str, Any],
    entry: LogEntry | None,
    *,
    fenced: bool,
) -> int:
    """Complete (``fenced``: :class:`LeaseLost` if not ours) or release (a no-op if not ours)
    the claim with ``values``, and log ``entry``; the log line's number (0 without one)."""
    if entry is not None and entry.id == id:  # one UPDATE, if the claim holds and no attempt is kept
        first = {**values, **_key(ns, id), "b_token": token, "b_attempts": encode_attempts((entry,))}
        if fenced:
            first["b_expires"] = values["expires_at"]
        if conn.execute(_COMPLETE_FIRST if fenced else _RELEASE_FIRST, first).rowcount == 1:
            return append(conn, ns, entry, attached=True)
    row = conn.execute(_READ_FINISH, _key(ns, id)).first()
    ours = row is not None and row.state == "inflight" and row.token == token
    if fenced and not ours:
        raise LeaseLost()
    update = dict(values) if ours else {}
    if row is not None and ours and fenced:
        update["retained_until"] = max(row.retained_until, values["expires_at"])
    kept = row is not None and row.received_at is not None
    if entry is not None and row is not None and kept and entry.id == id:
        update["attempts"] = encode_attempts(bounded(decode_attempts(row.attempts), entry))
    if update:
        conn.execute(_UPDATE, {**update, **_key(ns, id)})
    # The row was read: when it is not kept, the log line has no attempt to attach.
    return 0 if entry is None else append(conn, ns, entry, attached=entry.id == id)


def append(conn: Connection, ns: str, entry: LogEntry, *, attached: bool = False) -> int:
    """A log line, and the kept delivery's attempt (unless ``attached`` already); its number."""
    result = conn.execute(_APPEND, {"ns": ns, "status": entry.status, "entry": entry.to_json()})
    if not attached and entry.id is not None:
        row = conn.execute(_READ_ATTEMPTS, _key(ns, entry.id)).first()
        if row is not None:
            attempts = encode_attempts(bounded(decode_attempts(row.attempts), entry))
            conn.execute(_UPDATE, {"attempts": attempts, **_key(ns, entry.id)})
    number = result.inserted_primary_key
    return int(number[0]) if number else 0


def reopen(conn: Connection, ns: str, id: str, now: float, lease: float, rerun: frozenset[str]) -> Claim:
    row = conn.execute(_READ_STATE, _key(ns, id)).first()
    if row is None or row.received_at is None:
        raise LookupError(id)
    if row.state == "inflight" and lease_is_live(row.lease_until, now, lease):
        return Claim("inflight", retry_after=row.lease_until - now)
    handlers = {k: v for k, v in decode_handlers(row.handlers).items() if k not in rerun}
    token, until = new_token(), now + lease
    values = {"state": "inflight", "token": token, "lease_until": until, "status": "in-flight"}
    values.update(expires_at=max(row.expires_at, until), retained_until=max(row.retained_until, until))
    values["handlers"] = encode_handlers(handlers)
    conn.execute(_UPDATE, {**values, **_key(ns, id)})
    return Claim("new", token, handlers)


def build_engine(url: str | URL, timeout: float) -> Engine:
    """An engine that survives a restarted server and bounds every wait by ``timeout``.

    A connection idle in the pool for more than :data:`PING_IDLE` seconds
    is pinged before use and replaced if the server closed it; on
    PostgreSQL, connecting, waiting for a lock and running a statement
    each end in an error (a 503) rather than a hang. Settings the URL
    gives itself win.
    """
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):  # postgres://, as some hosts spell it
        parsed = parsed.set(drivername=_default_postgres_driver())
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {"pool_timeout": timeout}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        ms = max(1, round(timeout * 1000))
        connect_args = {
            "connect_timeout": max(1, math.ceil(timeout)),
            "options": f"-c lock_timeout={ms} -c statement_timeout={6 * ms}",
            # A server that vanished without closing the connection is noticed too.
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
        }
    elif parsed.get_backend_name() == "sqlite":
        connect_args = {"timeout": timeout}
    for key in list(connect_args):
        if key in parsed.query:
            del connect_args[key]
    engine = sa.create_engine(parsed, connect_args=connect_args, **options)
    _ping_when_idle(engine)
    return engine


#: Seconds a pooled connection may sit idle and still be used without a ping.
PING_IDLE = 1.0
_IDLE_SINCE = "flask_hooks.idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections idle over :data:`PING_IDLE` only.

    ``pool_pre_ping`` costs a round trip per transaction, two per delivery.
    A connection back in the pool a moment ago is used as it is: if the
    server restarted in that moment, its transaction fails (a 503, retried
    by the sender) and SQLAlchemy then replaces every connection of the
    pool, as a failed ping would.
    """

    @sa.event.listens_for(engine, "checkin")
    def checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since <= PING_IDLE:
            return  # a fresh connection, or one in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # As pool_pre_ping: replace this connection and every older one.
            raise sa.exc.InvalidatePoolError() from exc


def _default_postgres_driver() -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when that is what is installed."""
    return "postgresql+psycopg2" if importlib.util.find_spec("psycopg2") else "postgresql+psycopg"
