"""What each write transaction of the SQL store does (``SqlStore._write`` runs them).

Every function here runs through a
:class:`~flask_hooks.stores._sql_rendered.DriverCursor`, in the store's write
transaction, or on a connection in autocommit until it calls
:meth:`~flask_hooks.stores._sql_rendered.DriverCursor.begin`: what it does
before is one statement, a transaction by itself. It reads a row it may
change ``FOR UPDATE`` (ignored by SQLite, where the transaction already
holds the write lock). Its statements are built once, with the row's key
as bound parameters and the values given at execution: an ``update()``
executed with ``{column: value}`` sets those columns, and each set of
columns is rendered once per engine.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..core.errors import LeaseLost, StoreUnavailable
from ..core.inbox import Kept, attempts_record, bounded, decode_attempts, encode_attempts, encode_headers
from ._sql_rendered import Cursor, DriverCursor
from ._sql_schema import deliveries as d
from ._sql_schema import log
from .base import (
    Claim,
    LogEntry,
    Reply,
    decode_handlers,
    decode_reply,
    encode_handlers,
    lease_is_live,
)


def _at_least(column: sa.ColumnElement[float], value: sa.BindParameter[float]) -> sa.ColumnElement[float]:
    """``max(column, value)`` in any dialect (SQLite's ``max``, PostgreSQL's ``GREATEST``)."""
    return sa.case((column > value, column), else_=value)


#: ``WHERE ns = :b_ns AND id = :b_id``.
_KEYED = sa.and_(d.c.ns == sa.bindparam("b_ns"), d.c.id == sa.bindparam("b_id"))
#: The row, while the claim with ``:b_token`` holds it.
_OWNED = sa.and_(_KEYED, d.c.state == "inflight", d.c.token == sa.bindparam("b_token"))
#: ``{column: value}`` at execution; and the dialect's conflict-free INSERT, by dialect.
_UPDATE = d.update().where(_KEYED)
_INSERT_NEW: dict[str, sa.Insert] = {}


class _State(NamedTuple):
    """What a claim or a replay reads of an existing row (not the body)."""

    state: str
    token: str
    lease_until: float
    expires_at: float
    retained_until: float
    handlers: str
    reply: str | None
    outcome: str
    received_at: float | None


class _Finish(NamedTuple):
    """What a completion or a release reads when its one-statement path did not match."""

    state: str
    token: str
    retained_until: float
    received_at: float | None
    attempts: str


_READ_STATE = sa.select(*(d.c[name] for name in _State._fields)).where(_KEYED).with_for_update()
_READ_FINISH = sa.select(*(d.c[name] for name in _Finish._fields)).where(_KEYED).with_for_update()
_READ_HANDLERS = sa.select(d.c.handlers).where(_OWNED).with_for_update()
_READ_ATTEMPTS = sa.select(d.c.attempts).where(_KEYED, d.c.received_at.is_not(None)).with_for_update()
_APPEND = log.insert()
#: A renewal: the record must outlive the lease, or a short TTL would expire it under the handler.
_UNTIL: sa.BindParameter[float] = sa.bindparam("b_until", type_=sa.Double())
_RENEW = (
    d.update()
    .where(_OWNED)
    .values(
        lease_until=_UNTIL,
        expires_at=_at_least(d.c.expires_at, _UNTIL),
        retained_until=_at_least(d.c.retained_until, _UNTIL),
    )
)


def _finish_first(fenced: bool) -> sa.Update:
    """Release, or complete (``fenced``), a claim whose delivery has no attempt recorded yet
    (the usual case) in one statement: the attempt is then the first, if the delivery is kept.

    A new statement each time: one derived (``.values()``, ``.returning()``) from a statement
    compiled before may lack columns (SQLAlchemy 2.1 keeps the original's memoized ones).
    """
    first = (
        d.update()
        .where(_OWNED, d.c.attempts == "")
        .values(attempts=sa.case((d.c.received_at.is_(None), d.c.attempts), else_=sa.bindparam("b_attempts")))
    )
    if not fenced:
        return first
    return first.values(
        retained_until=_at_least(d.c.retained_until, sa.bindparam("b_expires", type_=sa.Double()))
    )


_RELEASE_FIRST = _finish_first(fenced=False)
_COMPLETE_FIRST = _finish_first(fenced=True)


#: PostgreSQL's completions and releases with their log line, by whether fenced and the columns set.
_LOGGED: dict[tuple[bool, tuple[str, ...]], sa.Insert] = {}


def _logged(fenced: bool, columns: tuple[str, ...]) -> sa.Insert:
    """``WITH done AS (UPDATE ... RETURNING ns) INSERT INTO log ... SELECT ... FROM done``:
    the one-statement completion (``fenced``) or release and its log line, or neither. The
    columns are bound as ``v_<column>``, the line as ``l_status`` and ``l_entry``."""
    found = _LOGGED.get((fenced, columns))
    if found is None:
        bound = {name: sa.bindparam(f"v_{name}", type_=d.c[name].type) for name in columns}
        done = _finish_first(fenced).values(bound).returning(d.c.ns).cte("done")
        line = sa.select(
            done.c.ns,
            sa.bindparam("l_status", type_=log.c.status.type),
            sa.bindparam("l_entry", type_=log.c.entry.type),
        )
        found = _LOGGED[fenced, columns] = (
            log.insert().from_select(["ns", "status", "entry"], line).returning(log.c.seq)
        )
    return found


def _key(ns: str, id: str) -> dict[str, Any]:
    return {"b_ns": ns, "b_id": id}


def insert_new(cursor: DriverCursor, values: dict[str, Any]) -> bool:
    """INSERT the (ns, id) row unless it exists (the claim's fast path); whether it was new."""
    name = cursor.dialect.name
    statement = _INSERT_NEW.get(name)
    if statement is None and name in ("postgresql", "sqlite", "mysql", "mariadb"):
        statement = _INSERT_NEW[name] = _insert_new(name)
    if statement is None:  # others: a SAVEPOINT catches the conflict
        assert isinstance(cursor, Cursor)  # (only PostgreSQL's connections are held)
        try:
            with cursor.conn.begin_nested():
                cursor.conn.execute(d.insert(), values)
        except IntegrityError:
            return False
        return True
    return cursor.run(statement, values) == 1


def _insert_new(name: str) -> sa.Insert:
    """The dialect's INSERT that does nothing on a conflict (its driver imported on first use)."""
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(d).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(d).on_conflict_do_nothing()
    return d.insert().prefix_with("IGNORE")


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


def claim(
    cursor: DriverCursor,
    ns: str,
    id: str,
    token: str,
    now: float,
    lease: float,
    ttl: float,
    keep: Kept | None,
) -> Claim:
    """Claim with ``token`` (the caller's: a claim tried again after its answer was lost finds
    its own, and is the claim it made)."""
    expires = now + max(ttl, lease)
    retained = max(expires, now + keep.retention) if keep is not None else expires
    fields = {"state": "inflight", "token": token, "lease_until": now + lease, "expires_at": expires}
    kept = kept_values(keep)
    new = {"ns": ns, "id": id, **fields, "retained_until": retained, "status": "in-flight", **kept}
    for _ in range(3):  # a row deleted between the two statements (forget, purge): insert again
        if insert_new(cursor, new):
            return Claim("new", token)  # the usual case, a delivery never seen
        cursor.begin()
        found = cursor.row(_READ_STATE, _key(ns, id))
        if found is not None:
            break
    else:
        raise StoreUnavailable()
    row = _State._make(found)
    if row.state == "inflight" and row.token == token:
        return Claim("new", token, decode_handlers(row.handlers))
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
    cursor.run(_UPDATE, {**values, **_key(ns, id)})  # a retry keeps the first copy
    return Claim("new", token, decode_handlers(handlers))


def mark(cursor: DriverCursor, ns: str, id: str, token: str, handler: str, reply: Reply | None) -> None:
    """Fenced by the token; the row stays locked until the transaction ends."""
    cursor.begin()
    row = cursor.row(_READ_HANDLERS, {**_key(ns, id), "b_token": token})
    if row is None:
        raise LeaseLost()
    handlers = decode_handlers(row[0])
    handlers[handler] = reply
    cursor.run(_UPDATE, {"handlers": encode_handlers(handlers), **_key(ns, id)})


def renew(cursor: DriverCursor, ns: str, id: str, token: str, until: float) -> None:
    """Extend the lease to ``until``; :class:`LeaseLost` if the claim is no longer ours."""
    if cursor.run(_RENEW, {**_key(ns, id), "b_token": token, "b_until": until}) != 1:
        raise LeaseLost()


def finish(
    cursor: DriverCursor,
    ns: str,
    id: str,
    token: str,
    values: dict[str, Any],
    entry: LogEntry | None,
    *,
    fenced: bool,
    logged: bool = True,
    again: bool = False,
) -> int:
    """Complete (``fenced``: :class:`LeaseLost` if not ours) or release (a no-op if not ours)
    the claim with ``values``, and log ``entry`` (the kept delivery's attempt; unless not
    ``logged``, the delivery log's line too); the log line's number (0 without one).

    ``again``: the first try's connection broke, maybe after it committed. A row left as
    this step leaves it, with the token (kept in the row for this), is then its own doing.
    """
    line = "" if entry is None else entry.to_json()
    if entry is not None and entry.id == id:
        # One UPDATE, if the claim holds and no attempt is kept yet.
        first = {**_key(ns, id), "b_token": token, "b_attempts": attempts_record((line,))}
        if fenced:
            first["b_expires"] = values["expires_at"]
        if logged and cursor.dialect.name == "postgresql":  # with the log line in the same statement
            bound = {**first, **{f"v_{name}": value for name, value in values.items()}}
            bound.update(l_status=entry.status, l_entry=line)
            row = cursor.row(_logged(fenced, tuple(values)), bound)
            if row is not None:
                return int(row[0])
        elif cursor.run(_COMPLETE_FIRST if fenced else _RELEASE_FIRST, {**values, **first}) == 1:
            return append(cursor, ns, entry, attached=True, line=line) if logged else 0
    cursor.begin()
    found = cursor.row(_READ_FINISH, _key(ns, id))
    row = None if found is None else _Finish._make(found)
    ours = row is not None and row.state == "inflight" and row.token == token
    if again and row is not None and not ours and row.token == token and row.state == values["state"]:
        return 0  # its first try committed before its answer was lost: its line is written
    if fenced and not ours:
        raise LeaseLost()
    update = dict(values) if ours else {}
    if row is not None and ours and fenced:
        update["retained_until"] = max(row.retained_until, values["expires_at"])
    kept = row is not None and row.received_at is not None
    if entry is not None and row is not None and kept and entry.id == id:
        update["attempts"] = encode_attempts(bounded(decode_attempts(row.attempts), entry))
    if update:
        cursor.run(_UPDATE, {**update, **_key(ns, id)})
    # The row was read: when it is not kept, the log line has no attempt to attach.
    if entry is None or not logged:
        return 0
    return append(cursor, ns, entry, attached=entry.id == id, line=line)


def append(
    cursor: DriverCursor, ns: str, entry: LogEntry, *, attached: bool = False, line: str | None = None
) -> int:
    """A log line (``line``: ``entry`` as JSON, if known), and the kept delivery's attempt
    (unless ``attached`` already); its number."""
    if not attached and entry.id is not None:
        cursor.begin()
    line = entry.to_json() if line is None else line
    number = cursor.insert(_APPEND, {"ns": ns, "status": entry.status, "entry": line})
    if not attached and entry.id is not None:
        row = cursor.row(_READ_ATTEMPTS, _key(ns, entry.id))
        if row is not None:
            attempts = encode_attempts(bounded(decode_attempts(row[0]), entry))
            cursor.run(_UPDATE, {"attempts": attempts, **_key(ns, entry.id)})
    return number


def reopen(
    cursor: DriverCursor,
    ns: str,
    id: str,
    token: str,
    now: float,
    lease: float,
    rerun: frozenset[str],
    keep: frozenset[str],
) -> Claim:
    cursor.begin()
    found = cursor.row(_READ_STATE, _key(ns, id))
    row = None if found is None else _State._make(found)
    if row is None or row.received_at is None:
        raise LookupError(id)
    if row.state == "inflight" and row.token == token:  # its own, tried again: reply and outcome stay
        reply = decode_reply(row.reply) if row.outcome else None
        return Claim("new", token, decode_handlers(row.handlers), reply=reply, outcome=row.outcome)
    if row.state == "inflight" and lease_is_live(row.lease_until, now, lease):
        return Claim("inflight", retry_after=row.lease_until - now)
    prior = (decode_reply(row.reply), row.outcome) if row.state == "done" else (None, "")
    if row.state == "done" and not rerun:
        return Claim("done", reply=prior[0], outcome=row.outcome)
    handlers = {k: v for k, v in decode_handlers(row.handlers).items() if k not in rerun}
    if row.state == "done":
        handlers.update({k: None for k in keep if k not in handlers and k not in rerun})
    until = now + lease
    values = {"state": "inflight", "token": token, "lease_until": until, "status": "in-flight"}
    values.update(expires_at=max(row.expires_at, until), retained_until=max(row.retained_until, until))
    values["handlers"] = encode_handlers(handlers)
    if row.state != "done":  # a released row may keep an earlier completion's: the row says what this answers
        values.update(reply=None, outcome="")
    cursor.run(_UPDATE, {**values, **_key(ns, id)})
    return Claim("new", token, handlers, reply=prior[0], outcome=prior[1])
