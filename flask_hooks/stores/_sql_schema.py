"""The SQL store's tables, and the Core queries of its reads, purges and log trims.

Kept apart from :mod:`flask_hooks.stores.sql` (the store, its engines
and transactions in ``_sql_conn``) so the schema reads in one place;
import :data:`metadata` from there (``flask_hooks.stores.sql.metadata``)
for Alembic. What each write transaction does is in ``_sql_writes``.

Times are seconds since the epoch as double precision, like every store's
``now``. The JSON columns (``handlers``, ``reply``, ``headers``,
``attempts``) hold the core's versioned records; ``body`` is the exact
bytes as received.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ..core.inbox import Stored, decode_attempts, decode_headers, like_prefix, type_like
from .base import decode_handlers

#: The store's tables, for ``metadata.create_all`` and Alembic's autogenerate.
metadata = sa.MetaData()

#: Delivery ids and namespaces: unbounded text where the database indexes it, else 255.
_KEY = sa.String(255).with_variant(sa.Text(), "postgresql", "sqlite")
_TIME: sa.Double[float] = sa.Double()
#: Bodies, replies, attempts and log lines: MySQL's TEXT and BLOB end at 64 KiB, under
#: the 1 MiB a body may be, or a 64 KiB reply once encoded; its LONG types do not.
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_BYTES = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

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
    sa.Column("handlers", _TEXT, nullable=False, server_default="{}"),
    sa.Column("reply", _TEXT, nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False, server_default=""),
    # The inbox: the status as last written, and the delivery as kept (NULL when not kept).
    sa.Column("status", sa.String(16), nullable=False, server_default="in-flight"),
    sa.Column("type", sa.Text(), nullable=True),
    sa.Column("body", _BYTES, nullable=True),
    sa.Column("headers", _TEXT, nullable=True),
    sa.Column("received_at", _TIME, nullable=True),
    sa.Column("secret_index", sa.Integer(), nullable=True),
    sa.Column("attempts", _TEXT, nullable=False, server_default=""),
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
    sa.Column("entry", _TEXT, nullable=False),
)

d = deliveries
# The purge and the periodic sweep: rows past their retention.
sa.Index("flask_hooks_deliveries_retention", d.c.retained_until)
# The inbox's list: newest first, keyset-paged on (received_at, id).
# Only kept deliveries are listed: records of a receiver without an inbox, and
# every update of a claim, then skip these two indexes.
_KEPT = d.c.received_at.isnot(None)
sa.Index(
    "flask_hooks_deliveries_received",
    d.c.ns,
    d.c.received_at.desc(),
    d.c.id.desc(),
    postgresql_where=_KEPT,
    sqlite_where=_KEPT,
)
sa.Index(
    "flask_hooks_deliveries_status",
    d.c.ns,
    d.c.status,
    d.c.received_at,
    postgresql_where=_KEPT,
    sqlite_where=_KEPT,
)
sa.Index("flask_hooks_log_ns", log.c.ns, log.c.seq)


def key(ns: str, id: str) -> sa.ColumnElement[bool]:
    return sa.and_(d.c.ns == ns, d.c.id == id)


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
        row.retained_until,
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
    # Past its retention a delivery is gone, swept or not yet (Stored.kept_at).
    held = sa.and_(d.c.state == "inflight", d.c.lease_until > now)
    query = query.where(sa.or_(d.c.retained_until > now, held))
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


def missing_columns(conn: sa.Connection, schemas: dict[str | None, str | None] | None) -> list[str]:
    """The columns of :data:`metadata` the database's tables lack (an older schema, a migration
    half done). ``create_all`` looks for the tables only: with a column missing, a claim
    worked, the handler ran, and its completion failed, so the handler ran at every retry."""
    inspector = sa.inspect(conn)
    missing = []
    for table in metadata.sorted_tables:
        schema = (schemas or {}).get(table.schema, table.schema)
        present = {column["name"] for column in inspector.get_columns(table.name, schema=schema)}
        missing += [f"{table.name}.{column.name}" for column in table.columns if column.name not in present]
    return missing
