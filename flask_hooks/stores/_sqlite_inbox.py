"""The SQLite store's inbox: keeping a delivery, its attempts, reading, replaying, purging.

Each function is one step on a cursor; :class:`~flask_hooks.stores.sqlite.SqliteStore`
runs the writes in its short write transactions (the writers' lock held)
and the reads outside them. The tables are in ``_sqlite_schema``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from ..core.errors import InFlight
from ..core.inbox import (
    MAX_ATTEMPTS,
    Kept,
    Stored,
    decode_attempts,
    decode_headers,
    encode_headers,
    like_prefix,
    type_like,
)
from .base import (
    FORMAT_VERSION,
    Claim,
    LogEntry,
    decode_handlers,
    decode_reply,
    encode_handlers,
    lease_is_live,
    new_token,
)

#: A kept delivery's columns, in :class:`Stored` order but for the state that decides its lease.
_STORED = (
    "SELECT d.id, d.type, k.body, k.headers, d.received_at, d.secret_index, d.status,"
    " d.lease_until, d.handlers, d.attempts, d.state, d.retained_until"
    " FROM hooks_deliveries AS d JOIN hooks_kept AS k ON k.seq = d.kept"
)

#: A delivery that a live claim holds is never purged (nor does retention end before a lease).
_PURGEABLE = "NOT (state = 'inflight' AND lease_until > ?)"


#: The ``seq`` the next row of ``hooks_kept`` gets: the claim names its copy before it stores
#: it, so a new delivery is one INSERT with all its columns (each index entry written once).
#: Both statements run in one write transaction, the writers' lock held, with nothing else
#: inserted in between: the two evaluations agree.
NEXT_SEQ = "(SELECT ifnull(max(seq), 0) + 1 FROM hooks_kept)"


def store_copy(db: sqlite3.Cursor, kept: Kept) -> None:
    """Store the body and headers as row :data:`NEXT_SEQ` of ``hooks_kept``."""
    sql = f"INSERT INTO hooks_kept (seq, headers, body) VALUES ({NEXT_SEQ}, ?, ?)"
    db.execute(sql, (encode_headers(kept.headers), kept.body))


def keep(db: sqlite3.Cursor, ns: str, id: str, kept: Kept) -> None:
    """Keep a copy for a record stored without one (a retry of a delivery the inbox missed)."""
    db.execute(
        f"UPDATE hooks_deliveries SET kept = {NEXT_SEQ}, type = ?, received_at = ?, secret_index = ?"
        " WHERE ns = ? AND id = ?",
        (kept.type, kept.received_at, kept.secret_index, ns, id),
    )
    store_copy(db, kept)


#: The attempts column with one attempt more, ``:line`` (the log line, ``LogEntry.to_json``),
#: the oldest dropped once ``MAX_ATTEMPTS`` are kept: the ``encode_attempts`` object, built
#: by SQLite's JSON functions from the line the log stores anyway. Decoding and encoding the
#: column in Python would cost some 20 µs an attempt under the writers' lock: 2 ms for a
#: delivery its sender retried for days.
_LINE = "json(:line)"
WITH_ATTEMPT = (
    f"CASE WHEN attempts IS NULL THEN json_object('v', {FORMAT_VERSION}, 'attempts', json_array({_LINE}))"
    f" WHEN json_array_length(attempts, '$.attempts') >= {MAX_ATTEMPTS}"
    f" THEN json_insert(json_remove(attempts, '$.attempts[0]'), '$.attempts[#]', {_LINE})"
    f" ELSE json_insert(attempts, '$.attempts[#]', {_LINE}) END"
)


def attach(db: sqlite3.Cursor, ns: str, entry: LogEntry, line: str) -> None:
    """Add ``entry`` (``line``, its JSON) to the attempts of the delivery it names, if that one is kept."""
    if entry.id is not None:
        db.execute(
            f"UPDATE hooks_deliveries SET attempts = {WITH_ATTEMPT}"
            " WHERE ns = :ns AND id = :id AND kept IS NOT NULL",
            {"line": line, "ns": ns, "id": entry.id},
        )


def _stored(row: Any) -> Stored:
    id, type, body, headers, received_at, secret_index, status, lease_until, handlers, attempts = row[:10]
    state, retained = row[10:]
    return Stored(
        id,
        type,
        bytes(body),
        decode_headers(headers),
        received_at,
        secret_index,
        status,
        lease_until if state == "inflight" else 0.0,
        decode_handlers(handlers),
        decode_attempts(attempts),
        retained,
    )


def get(db: sqlite3.Cursor, ns: str, id: str) -> Stored | None:
    row = db.execute(_STORED + " WHERE d.ns = ? AND d.id = ?", (ns, id)).fetchone()
    return None if row is None else _stored(row)


def query_sql(
    ns: str,
    now: float,
    status: str | None,
    type: str | None,
    since: float | None,
    until: float | None,
    before: tuple[float, str] | None,
    limit: int,
) -> tuple[str, list[object]]:
    """The statement of :meth:`DedupeStore.query` and its parameters.

    Newest first along ``hooks_deliveries_received`` (filtered by status,
    ``hooks_deliveries_status``), stopping after ``limit`` rows: the first
    page reads the same few rows however many are kept. ``failed`` (as of
    ``now``, a claim whose lease ran out counts: its worker died) merges
    two ranges of the status index, each already in order: no sort.
    """
    where = ["d.ns = ?", "d.received_at IS NOT NULL"]  # the partial indexes' condition
    args: list[object] = [ns]
    # Past its retention a delivery is gone, swept or not yet (Stored.kept_at).
    where.append("(d.retained_until > ? OR (d.state = 'inflight' AND d.lease_until > ?))")
    args += [now, now]
    exact, prefix = type_like(type)
    if prefix is not None:
        # LIKE ignores ASCII case and routing patterns do not: the prefix is compared exactly too.
        starts = "(d.type LIKE ? ESCAPE '\\' AND substr(d.type, 1, ?) = ?)"
        where.append(starts if exact is None else f"(d.type = ? OR {starts})")
        args += [*([] if exact is None else [exact]), like_prefix(prefix), len(prefix), prefix]
    if since is not None:
        where.append("d.received_at >= ?")
        args.append(since)
    if until is not None:
        where.append("d.received_at < ?")
        args.append(until)
    if before is not None:
        where.append("(d.received_at, d.id) < (?, ?)")
        args += list(before)
    arms: list[tuple[str, list[object]]] = [("", [])]
    if status == "failed":
        arms = [
            (" AND d.status = 'failed'", []),
            (" AND d.status = 'in-flight' AND d.lease_until <= ?", [now]),
        ]
    elif status == "in-flight":
        arms = [(" AND d.status = 'in-flight' AND d.lease_until > ?", [now])]
    elif status is not None:
        arms = [(" AND d.status = ?", [status])]
    common = " AND ".join(where)
    sql = " UNION ALL ".join(f"{_STORED} WHERE {common}{arm}" for arm, _ in arms)
    params = [value for _, extra in arms for value in (*args, *extra)]
    return f"{sql} ORDER BY received_at DESC, id DESC LIMIT ?", [*params, max(0, limit)]


def query(db: sqlite3.Cursor, *args: Any) -> list[Stored]:
    """``query_sql(*args)``, run."""
    sql, params = query_sql(*args)
    return [_stored(row) for row in db.execute(sql, params).fetchall()]


def reopen(
    db: sqlite3.Cursor,
    ns: str,
    id: str,
    now: float,
    lease: float,
    rerun: Collection[str],
    keep: Collection[str],
) -> Claim:
    row = db.execute(
        "SELECT state, lease_until, handlers, kept, reply, outcome FROM hooks_deliveries"
        " WHERE ns = ? AND id = ?",
        (ns, id),
    ).fetchone()
    if row is None or row[3] is None:
        raise LookupError(id)
    state, lease_until, raw, _, reply, outcome = row
    if state == "inflight" and lease_is_live(lease_until, now, lease):
        return Claim("inflight", retry_after=lease_until - now)
    prior = (decode_reply(reply), outcome) if state == "done" else (None, "")
    if state == "done" and not rerun:
        return Claim("done", reply=prior[0], outcome=outcome)
    handlers = {k: v for k, v in decode_handlers(raw).items() if k not in rerun}
    if state == "done":
        handlers.update({k: None for k in keep if k not in handlers and k not in rerun})
    token, until = new_token(), now + lease
    db.execute(
        "UPDATE hooks_deliveries SET state = 'inflight', token = ?, lease_until = ?, status = 'in-flight',"
        " expires_at = max(expires_at, ?), retained_until = max(retained_until, ?), handlers = ?"
        " WHERE ns = ? AND id = ?",
        (token, until, until, until, encode_handlers(handlers), ns, id),
    )
    return Claim("new", token, handlers, reply=prior[0], outcome=prior[1])


def forget(db: sqlite3.Cursor, ns: str, id: str, now: float, lease: float) -> bool:
    """Delete the record, its marks and (by the trigger) its kept copy, unless a live claim holds it."""
    sql = "SELECT state, lease_until FROM hooks_deliveries WHERE ns = ? AND id = ?"
    row = db.execute(sql, (ns, id)).fetchone()
    if row is None:
        return False
    if row[0] == "inflight" and lease_is_live(row[1], now, lease):
        raise InFlight(after=row[1] - now)
    return db.execute("DELETE FROM hooks_deliveries WHERE ns = ? AND id = ?", (ns, id)).rowcount > 0


def purge(db: sqlite3.Cursor, ns: str | None, now: float, received_before: float | None, limit: int) -> int:
    """Delete up to ``limit`` rows past their retention (of every receiver when ``ns`` is None),
    or kept and received before ``received_before``; never one a live claim holds.

    Nor one that still counts as a duplicate: this version keeps ``retained_until`` at or past
    ``expires_at``, but a 0.1 worker still running on a file it migrated (a rolling restart)
    writes records with the column's default, 0."""
    due, args = ["(retained_until <= ? AND expires_at <= ?)"], [now, now]
    if received_before is not None:
        due.append("received_at < ?")  # NULL (not kept) never is
        args.append(received_before)
    scope = "" if ns is None else "ns = ? AND "
    pick = (
        f"SELECT ns, id FROM hooks_deliveries WHERE {scope}({' OR '.join(due)}) AND {_PURGEABLE} LIMIT ?"
    )
    params = [*([] if ns is None else [ns]), *args, now, limit]
    cur = db.execute(f"DELETE FROM hooks_deliveries WHERE (ns, id) IN ({pick})", params)
    return cur.rowcount
