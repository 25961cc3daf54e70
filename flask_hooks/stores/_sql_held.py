"""Connections ``SqlStore`` keeps out of its own engine's pool between transactions (PostgreSQL).

A checkout and checkin of SQLAlchemy's pool (its reset, events and
transaction bookkeeping) costs about what the statements of a short
transaction cost the worker. So, on an engine the store built from a URL
(whose pool nobody else draws from), a connection it used is kept,
with its cursor, in autocommit on a stack, the most recently used on top:
a claim of a new delivery and its completion are then one statement each,
which commits by itself; work of several statements makes them one
transaction with :meth:`HeldCursor.begin`.

The pool still connects, bounds the waits and pings: a connection unused
for :data:`~._sql_engine.PING_IDLE` goes back to it and is pinged at its
next checkout, as is every connection held when one of them turns out
lost (that one is invalidated). A forked worker never touches its
parent's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from ..core.errors import StoreUnavailable
from . import _sql_engine
from ._sql_engine import DOWN, ConnectionLost, check_in_idle
from ._sql_rendered import DriverCursor, Statements

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPICursor, DBAPIModule

T = TypeVar("T")

#: Drivers whose connections are held: psycopg 3 (its ``autocommit`` switch costs no round trip;
#: psycopg2's would do the same, untested here).
DRIVERS = frozenset({"psycopg"})

#: Connections a forked child inherited from its parent: kept referenced, never closed nor
#: garbage-collected (either would end the parent's session over the shared socket).
_inherited: list[object] = []


class _Held:
    """A pooled connection held by the store, its cursor, and since when it is unused."""

    __slots__ = ("connection", "cursor", "driver", "lost", "since")

    def __init__(self, connection: PoolProxiedConnection, driver: Any, cursor: DBAPICursor) -> None:
        self.connection = connection
        self.driver = driver
        self.cursor = cursor
        self.since = 0.0
        #: The error that showed the connection lost, if one did.
        self.lost: BaseException | None = None


class HeldCursor(DriverCursor):
    """The cursor of a held connection: in autocommit until :meth:`begin`."""

    def __init__(self, held: _Held, held_by: HeldConnections) -> None:
        self.dialect = held_by.engine.dialect
        self._statements = held_by.statements
        self._errors = held_by.errors
        self._cursor = held.cursor
        self._held = held

    def begin(self) -> None:
        driver = self._held.driver
        if driver.autocommit:  # the driver begins the transaction with the next statement
            try:
                driver.autocommit = False
            except self._errors as exc:  # refused only when the connection is not idle: broken
                self._held.lost = exc
                raise ConnectionLost() from exc

    def commit(self) -> None:
        """Commit the transaction :meth:`begin` started, if it did; back to autocommit."""
        driver = self._held.driver
        if not driver.autocommit:
            try:
                driver.commit()
            except self._errors as exc:
                raise self._unavailable(exc, None) from exc
            driver.autocommit = True

    def _unavailable(self, exc: DBAPIModule.Error, cursor: DBAPICursor | None) -> StoreUnavailable:
        held = self._held
        if held.lost is None and self.dialect.is_disconnect(exc, held.driver, cursor):
            held.lost = exc
        return StoreUnavailable() if held.lost is None else ConnectionLost()


class HeldConnections:
    """The connections held out of ``engine``'s pool, for work on a :class:`HeldCursor`."""

    def __init__(self, engine: Engine, statements: Statements) -> None:
        self.engine = engine
        self.statements = statements
        self.errors: type[DBAPIModule.Error] = engine.dialect.loaded_dbapi.Error
        self._idle: list[_Held] = []  # the most recently used last
        self._lock = threading.Lock()

    def write(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(cursor, *args, **kwargs)``, committed (or rolled back if it raises)."""
        held = self._take()
        try:
            cursor = HeldCursor(held, self)
            result = work(cursor, *args, **kwargs)
            cursor.commit()
        except Exception:
            self._recover(held)
            raise
        except BaseException:  # interrupted mid-statement, maybe: the connection's state is unknown
            self._drop(held, None)
            raise
        self._give(held)
        return result

    def _take(self) -> _Held:
        stale: list[_Held] = []
        with self._lock:
            held = self._idle.pop() if self._idle else None
            if held is not None and time.monotonic() - held.since > _sql_engine.PING_IDLE:
                stale, held = [*self._idle, held], None  # all of them idle: the pool pings them
                self._idle.clear()
        for old in stale:
            self._hand_back(old, old.since)
        return held if held is not None else self._checkout()

    def _checkout(self) -> _Held:
        try:
            connection = self.engine.raw_connection()
        except (*DOWN, self.errors) as exc:  # the driver's, unwrapped on this path
            raise StoreUnavailable() from exc
        driver: Any = connection.dbapi_connection
        try:
            driver.autocommit = True
            return _Held(connection, driver, driver.cursor())
        except self.errors as exc:
            connection.invalidate(exc)
            raise StoreUnavailable() from exc

    def _give(self, held: _Held) -> None:
        held.since = now = time.monotonic()
        with self._lock:
            self._idle.append(held)
            oldest = self._idle[0]
            stale = self._idle.pop(0) if now - oldest.since > _sql_engine.PING_IDLE else None
        if stale is not None:  # unused for a while: the pool may have it (or close it)
            self._hand_back(stale, stale.since)

    def _recover(self, held: _Held) -> None:
        """After a failed transaction: roll back and keep the connection, unless it is lost."""
        if held.lost is None:
            try:
                held.driver.rollback()
                held.driver.autocommit = True
            except self.errors as exc:
                held.lost = exc
        if held.lost is None:
            self._give(held)
            return
        # As SQLAlchemy does on a disconnect: the pool's other connections, older, are replaced too.
        self.engine.pool._invalidate(held.connection, held.lost)
        with self._lock:  # the server may have gone for all of them: pinged at their next checkout
            suspects, self._idle = self._idle, []
        for other in suspects:
            self._hand_back(other, float("-inf"))

    def _drop(self, held: _Held, exc: BaseException | None) -> None:
        """Invalidate: the pool replaces the connection at its next checkout."""
        held.connection.invalidate(exc)

    def _hand_back(self, held: _Held, idle_since: float) -> None:
        try:
            held.cursor.close()
            held.driver.autocommit = False  # as the pool's other users expect it
        except self.errors as exc:
            self._drop(held, exc)
            return
        check_in_idle(held.connection, idle_since)

    def lend(self) -> None:
        """Before a checkout elsewhere (reads, atomic handlers): if the pool has no connection in
        it, hand one held back, so that the checkout never waits for connections held unused."""
        pool = self.engine.pool
        if self._idle and isinstance(pool, QueuePool) and pool.checkedin() == 0:
            with self._lock:
                held = self._idle.pop(0) if self._idle else None
            if held is not None:
                self._hand_back(held, held.since)

    def close(self) -> None:
        """Hand every held connection back to the pool (before it is disposed of)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for held in idle:
            self._hand_back(held, held.since)

    def forked(self) -> None:
        """In a forked child: forget the parent's connections without closing them (and its lock,
        which a thread of the parent may have held at the fork)."""
        _inherited.extend(self._idle)
        self._idle = []
        self._lock = threading.Lock()
