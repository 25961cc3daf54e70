"""The engine ``SqlStore`` builds from a URL (bounded waits, pings for idle connections only),
and the errors that mean its database is unavailable."""

from __future__ import annotations

import importlib
import importlib.util
import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

from ..core.errors import StoreUnavailable

#: What a database that is down, restarting, locked or slow raises: a 503, never a false
#: success. Errors in the SQL we send (a bug) are not among them and stay 500s.
DOWN = (sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError, sa_exc.PendingRollbackError)


class ConnectionLost(StoreUnavailable):
    """The connection broke (the server restarted or ended the session, the network failed):
    the transaction may run once more, on another. A 503 instead, after a handler ran, would
    have it run again at the sender's retry."""


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The 503 for an error of SQLAlchemy's: :class:`ConnectionLost` if it invalidated the connection."""
    return ConnectionLost() if getattr(exc, "connection_invalidated", False) else StoreUnavailable()


def sqlstate(exc: BaseException | None) -> str | None:
    """PostgreSQL's SQLSTATE of a driver's error, under SQLAlchemy's or not (psycopg 3, psycopg2)."""
    error = getattr(exc, "orig", exc)
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


#: The PostgreSQL drivers whose connect options :func:`build_engine` bounds waits with; on
#: others, the store bounds its transactions' lock waits itself, as on an engine given.
BOUNDED_DRIVERS = frozenset({"psycopg", "psycopg2"})


def build_engine(url: str | URL, timeout: float) -> Engine:
    """An engine that survives a restarted server and bounds every wait by ``timeout``.

    A connection idle in the pool for more than :data:`PING_IDLE` seconds
    is pinged before use and replaced if the server closed it; on
    PostgreSQL, connecting, waiting for a lock and running a statement
    each end in an error (a 503) rather than a hang. Settings the URL
    gives itself win (its ``options`` are added to the bounds, not put
    in their place).
    """
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):  # postgres://, as some hosts spell it
        parsed = parsed.set(drivername=_default_postgres_driver())
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {"pool_timeout": timeout}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in BOUNDED_DRIVERS:
        ms = max(1, round(timeout * 1000))
        connect_args = {
            "connect_timeout": max(1, math.ceil(timeout)),
            # Whatever the database's defaults: a commit is on disk before the 200 (a DBA's
            # synchronous_commit=off lost acknowledged deliveries in a crash), and the store's
            # one-statement transactions, fenced by a token, never fail to serialize.
            "options": f"-c lock_timeout={ms} -c statement_timeout={6 * ms} -c synchronous_commit=on"
            r" -c default_transaction_isolation=read\ committed",
            # A server that vanished without closing the connection is noticed too: while
            # idle, by keepalives; with a statement sent and never acknowledged (a partition,
            # a host gone: the server's statement_timeout cannot help), by TCP's user
            # timeout, not by its retransmissions' 15 minutes.
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
        }
        if _libpq_version(parsed.get_driver_name()) >= 120000:  # older ones refuse to connect with it
            connect_args["tcp_user_timeout"] = max(1, math.ceil(timeout)) * 1000
        # Also in each BEGIN (psycopg's ISOLATION LEVEL), for the connect options a pooler
        # drops. Not on other drivers: pg8000's is a session setting, which a pooler would
        # hand to its other clients.
        options["isolation_level"] = "READ COMMITTED"
    elif parsed.get_backend_name() == "sqlite":
        connect_args = {"timeout": timeout}
    theirs = parsed.query.get("options")
    if theirs is not None and "options" in connect_args:
        # A search_path, say: ours first, so that what the URL sets itself wins (the last -c does).
        given = " ".join(theirs) if isinstance(theirs, tuple) else theirs
        connect_args["options"] = f"{connect_args['options']} {given}"
        parsed = parsed.difference_update_query(["options"])
    for key in list(connect_args):
        if key in parsed.query:
            del connect_args[key]
    engine = sa.create_engine(parsed, connect_args=connect_args, **options)
    _ping_when_idle(engine)
    return engine


def timeout_of(url: str | URL, timeout: float) -> tuple[URL, float]:
    """``url`` without the ``?timeout=`` of a PostgreSQL URL, and the store's timeout: that one.

    ``HOOKS_STORE`` is a URL, and ``sqlite:///...?timeout=2`` sets the embedded
    store's; libpq has no such option, and refused every connection with it
    (SQLite's driver has one: there it stays the driver's).
    """
    parsed = sa.make_url(url)
    given = parsed.query.get("timeout")
    if given is None or parsed.get_backend_name() not in ("postgresql", "postgres"):
        return parsed, timeout
    value = given[-1] if isinstance(given, tuple) else given
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"timeout must be a positive number of seconds, not {value!r}") from None
    return parsed.difference_update_query(["timeout"]), seconds


#: Seconds a pooled connection may sit idle and still be used without a ping.
PING_IDLE = 1.0
_IDLE_SINCE = "flask_hooks.idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections idle over :data:`PING_IDLE` only.

    ``pool_pre_ping`` costs a round trip per transaction, two per delivery.
    A connection back in the pool a moment ago is used as it is: if the
    server restarted in that moment, its transaction fails (a 503, retried
    by the sender) and the connection is replaced. A failed ping, like
    ``pool_pre_ping``'s, replaces every connection of the pool.
    """

    @sa.event.listens_for(engine, "checkin")
    def checkin(dbapi_connection: Any, record: Any) -> None:
        record.info.setdefault(_IDLE_SINCE, time.monotonic())  # unless :func:`check_in_idle` said

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


def check_in_idle(connection: PoolProxiedConnection, idle_since: float) -> None:
    """Check ``connection`` in as idle since ``idle_since`` (a ``time.monotonic()``), not since now:
    a connection the store held unused, or may have lost, is pinged at its next checkout."""
    connection.info[_IDLE_SINCE] = idle_since
    connection.close()


def in_transaction(conn: Connection) -> Connection:
    """``conn``, out of autocommit for this checkout if its engine put it there
    (``isolation_level="AUTOCOMMIT"``), at the engine's default level.

    The store's statements, and an atomic handler's writes with its mark, must
    be one transaction: in autocommit each commits by itself, so a lost lease
    would roll back nothing and two claims could both win. SQLAlchemy resets
    the level when the connection goes back to its pool.
    """
    if in_autocommit(conn):
        conn.execution_options(isolation_level=transaction_level(conn.dialect))
    return conn


def transaction_level(dialect: sa.Dialect) -> str:
    """The isolation level of a connection taken out of autocommit: the dialect's default."""
    return dialect.default_isolation_level or "READ COMMITTED"


def in_autocommit(conn: Connection) -> bool:
    """Whether the driver commits every statement by itself (psycopg, psycopg2, pg8000 say so)."""
    return getattr(conn.connection.dbapi_connection, "autocommit", False) is True


def _libpq_version(driver: str) -> int:
    """The version of the libpq ``driver`` uses (``120000`` for 12.0), 0 if it cannot say."""
    try:
        if driver == "psycopg":
            return int(importlib.import_module("psycopg.pq").version())
        return int(importlib.import_module("psycopg2").__libpq_version__)
    except (ImportError, AttributeError):  # not installed: create_engine says so
        return 0


def _default_postgres_driver() -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when that is what is installed."""
    return "postgresql+psycopg2" if importlib.util.find_spec("psycopg2") else "postgresql+psycopg"
