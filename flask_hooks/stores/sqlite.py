"""``sqlite:///path``: the embedded default, correct across processes.

The connections and the writers' lock are in ``_sqlite_conn``, the
tables and their migration in ``_sqlite_schema``, the inbox's statements
in ``_sqlite_inbox``; here, the state machine and the delivery log.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Collection

from ..core.errors import LeaseLost, StoreUnavailable
from ..core.inbox import Kept, Stored
from . import _sqlite_inbox as inbox
from ._sqlite_conn import Connections
from .base import (
    Claim,
    DedupeStore,
    LogEntry,
    Reply,
    decode_handlers,
    decode_reply,
    encode_handlers,
    encode_reply,
    lease_is_live,
    new_token,
    takes_turn,
)

log = logging.getLogger("flask_hooks")

#: Rows past their retention are purged after every log line (a completion's, a release's
#: or one of its own) whose rowid is a multiple of this: the count is the database's, not
#: one process's, so workers restarted every few hundred requests purge too. A sweep removes up to
#: ``_SWEEP_MAX`` rows (twice the inflow, so a backlog shrinks), in transactions of
#: ``_PURGE_BATCH`` that hold the writers' lock for a millisecond or a few each. The
#: completion that sweeps answers after its sweep, and a backlog's rows are scattered
#: over the file: two batches keep that completion, and every writer's wait, under
#: 50 ms, and 4 busy workers at 0.9x their throughput (``bench/inbox_purge.py``).
#: ``flask hooks purge`` is for a large backlog (a retention shortened).
_PURGE_EVERY = 64
_PURGE_BATCH = 64
_SWEEP_MAX = 2 * _PURGE_EVERY
#: A receiver's log is trimmed to ``log_size`` after about one of its lines in this many.
_TRIM_EVERY = 64
#: An explicit purge of many rows, after each full batch, checkpoints and leaves the
#: writers' lock alone this many times as long as both took, so receivers keep most of it.
_PURGE_PAUSE = 4.0

#: Nothing inserted when the delivery has a record; not ``INSERT OR IGNORE``, which also drops
#: a row its table refuses (a NOT NULL column a newer version added): the claim found no
#: record then, and raised a TypeError, a 500, where the constraint's error is a 503.
_INSERT_NEW = (
    "INSERT INTO hooks_deliveries"
    " (ns, id, state, token, lease_until, expires_at, retained_until, status)"
    " VALUES (?, ?, 'inflight', ?, ?, ?, ?, 'in-flight') ON CONFLICT DO NOTHING"
)
#: The same with the kept columns, naming the copy that ``inbox.store_copy`` stores next.
_INSERT_NEW_KEPT = (
    "INSERT INTO hooks_deliveries"
    " (ns, id, state, token, lease_until, expires_at, retained_until, status,"
    " type, received_at, secret_index, kept)"
    f" VALUES (?, ?, 'inflight', ?, ?, ?, ?, 'in-flight', ?, ?, ?, {inbox.NEXT_SEQ}) ON CONFLICT DO NOTHING"
)


def _completion(attempt: bool, grow: bool) -> str:
    """The completion's UPDATE, fenced by the token: with the attempt (``:line``), and
    either growing retained_until to ``:expires`` or only where it already lasts that long."""
    sql = (
        "UPDATE hooks_deliveries SET state = 'done', token = '', lease_until = 0, reply = :reply,"
        " outcome = :outcome, status = :outcome, expires_at = :expires"
    )
    if attempt:
        sql += f", attempts = CASE WHEN kept IS NULL THEN attempts ELSE {inbox.WITH_ATTEMPT} END"
    sql += ", retained_until = max(retained_until, :expires)" if grow else ""
    sql += " WHERE ns = :ns AND id = :id AND state = 'inflight' AND token = :token"
    return sql if grow else sql + " AND retained_until >= :expires"


_COMPLETE = {(a, g): _completion(a, g) for a in (False, True) for g in (False, True)}


class SqliteStore(Connections, DedupeStore):
    """A store in one SQLite file (WAL), shared by every process that opens it.

    ``synchronous`` is ``FULL`` by default so an acknowledged delivery
    survives a power cut, not only a crash; ``NORMAL`` trades that for
    speed. Either way claims, renewals, releases and log lines commit at
    ``NORMAL`` at most: losing one in a power cut changes nothing (a lost
    claim is an expired lease), and not waiting for the disk keeps the
    writers' lock short, which is most of what concurrent workers wait for.

    The inbox costs no transaction of its own: a claim stores the kept
    copy, a completion or release the attempt, in the transaction they
    make anyway. Rows past their retention are swept in short batches
    after a completion (``_maintain``), never inside one.
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 2.0,
        synchronous: str = "FULL",
        log_size: int = 1000,
    ) -> None:
        super().__init__(path, timeout=timeout, synchronous=synchronous)
        self.log_size = log_size

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r}>"

    # The state machine: each public method is one transaction of its private twin.

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        return self._write(self._claim, ns, id, now, lease, ttl, keep, durable=False, fenced=True)

    @staticmethod
    def _claim(
        db: sqlite3.Cursor, ns: str, id: str, now: float, lease: float, ttl: float, keep: Kept | None
    ) -> Claim:
        token = new_token()
        expires = now + max(ttl, lease)
        # The TTL runs from the completion: retained as if that came when the lease ends,
        # so a completion within the lease leaves retained_until (and its index) alone.
        retained = expires + lease
        if keep is not None:
            retained = max(retained, now + keep.retention)
        # The usual case, a delivery never seen: one statement (and its copy), no SELECT first.
        values = (ns, id, token, now + lease, expires, retained)
        if keep is None:
            inserted = db.execute(_INSERT_NEW, values).rowcount == 1
        else:
            more = (keep.type, keep.received_at, keep.secret_index)
            inserted = db.execute(_INSERT_NEW_KEPT, values + more).rowcount == 1
            if inserted:
                inbox.store_copy(db, keep)
        if inserted:
            return Claim("new", token)
        row = db.execute(
            "SELECT state, lease_until, expires_at, retained_until, handlers, reply, outcome, kept"
            " FROM hooks_deliveries WHERE ns = ? AND id = ?",
            (ns, id),
        ).fetchone()
        state, lease_until, expires_at, retained_until, handlers, reply, outcome, kept = row
        if expires_at <= now:
            handlers = "{}"  # an expired record starts afresh (its kept copy and attempts stay)
        elif state == "done":
            return Claim("done", reply=decode_reply(reply), outcome=outcome)
        elif state == "inflight" and lease_is_live(lease_until, now, lease):
            return Claim("inflight", retry_after=lease_until - now)
        db.execute(
            "UPDATE hooks_deliveries SET state = 'inflight', token = ?, lease_until = ?, expires_at = ?,"
            " retained_until = ?, handlers = ?, reply = NULL, outcome = '', status = 'in-flight'"
            " WHERE ns = ? AND id = ?",
            (token, now + lease, expires, max(retained, retained_until), handlers, ns, id),
        )
        if kept is None and keep is not None:  # a retry keeps the first copy
            inbox.keep(db, ns, id, keep)
        return Claim("new", token, decode_handlers(handlers))

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        self._write(self._mark, ns, id, token, handler, reply)

    @staticmethod
    def _mark(
        db: sqlite3.Cursor, ns: str, id: str, token: str, handler: str, reply: Reply | None
    ) -> None:
        row = db.execute(
            "SELECT handlers FROM hooks_deliveries"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (ns, id, token),
        ).fetchone()
        if row is None:
            raise LeaseLost()
        handlers = decode_handlers(row[0])
        handlers[handler] = reply
        db.execute(
            "UPDATE hooks_deliveries SET handlers = ? WHERE ns = ? AND id = ?",
            (encode_handlers(handlers), ns, id),
        )

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        self._write(self._renew, ns, id, token, now + lease, durable=False)

    @staticmethod
    def _renew(db: sqlite3.Cursor, ns: str, id: str, token: str, until: float) -> None:
        # The record must outlive the lease, or a short TTL would expire it under the handler.
        cur = db.execute(
            "UPDATE hooks_deliveries SET lease_until = ?, expires_at = max(expires_at, ?),"
            " retained_until = max(retained_until, ?)"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (until, until, until, ns, id, token),
        )
        if cur.rowcount != 1:
            raise LeaseLost()

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
        seq = self._write(self._complete, ns, id, token, outcome, reply, now, ttl, entry)
        self._maintain(seq, now)

    def _complete(
        self,
        db: sqlite3.Cursor,
        ns: str,
        id: str,
        token: str,
        outcome: str,
        reply: Reply | None,
        now: float,
        ttl: float,
        entry: LogEntry | None,
    ) -> int:
        line = "" if entry is None else entry.to_json()  # the log line, and the attempt
        attached = entry is not None and entry.id == id
        args = {  # each statement reads only the names it has
            "reply": encode_reply(reply), "outcome": outcome, "expires": now + ttl, "line": line,
            "ns": ns, "id": id, "token": token,
        }  # fmt: skip
        # The usual case: the claim retained the record past this completion, so one UPDATE,
        # which leaves retained_until and its index entry alone (see _claim). Else a handler
        # outran its lease (the retention must grow), or the lease was lost.
        if (
            db.execute(_COMPLETE[attached, False], args).rowcount != 1
            and db.execute(_COMPLETE[attached, True], args).rowcount != 1
        ):
            raise LeaseLost()
        if entry is None:
            return 0
        return self._append(db, ns, entry, line, attached=attached)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        seq = self._write(self._release, ns, id, token, entry, durable=False)
        self._maintain(seq, now)

    def _release(self, db: sqlite3.Cursor, ns: str, id: str, token: str, entry: LogEntry | None) -> int:
        db.execute(
            "UPDATE hooks_deliveries SET state = 'free', token = '', lease_until = 0, status = 'failed'"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (ns, id, token),
        )
        return 0 if entry is None else self._append(db, ns, entry, entry.to_json())

    # The delivery log, and each kept delivery's attempts.

    def _append(
        self, db: sqlite3.Cursor, ns: str, entry: LogEntry, line: str, *, attached: bool = False
    ) -> int:
        """Add ``entry`` (``line``, its JSON) to the log and, unless ``attached``, to its delivery's
        attempts, trimming the log now and then; its rowid."""
        if not attached:
            inbox.attach(db, ns, entry, line)
        sql = "INSERT INTO hooks_log (ns, status, entry) VALUES (?, ?, ?)"
        seq = db.execute(sql, (ns, entry.status, line)).lastrowid or 0
        if takes_turn(seq, ns, _TRIM_EVERY):
            db.execute(
                "DELETE FROM hooks_log WHERE ns = ? AND seq <= (SELECT seq FROM hooks_log"
                " WHERE ns = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (ns, ns, self.log_size),
            )
        return seq

    def log(self, ns: str, entry: LogEntry) -> None:
        seq = self._write(self._append, ns, entry, entry.to_json(), durable=False)
        # This line takes its turn at the sweep too, as of when it was received: were it
        # left out, completions that each follow one (a duplicate of every delivery) could
        # all take odd numbers and never sweep.
        if entry.received_at:
            self._maintain(seq, entry.received_at)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        sql = "SELECT entry FROM hooks_log WHERE ns = ?"
        args: list[object] = [ns]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(min(limit, self.log_size))
        rows = self._read(lambda db: db.execute(sql, args).fetchall())
        return [LogEntry.from_json(row[0]) for row in rows]

    # The inbox (the statements are in ``_sqlite_inbox``).

    def get(self, ns: str, id: str) -> Stored | None:
        return self._read(inbox.get, ns, id)

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
        return self._read(inbox.query, ns, now, status, type, since, until, before, limit)

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
        # Fenced like a claim: a replay taken in a replaced file would run handlers that the
        # sender's retry, claiming in the new file, runs again.
        return self._write(
            inbox.reopen, ns, id, now, lease, frozenset(rerun), frozenset(keep), durable=False, fenced=True
        )

    def forget(self, ns: str, id: str, *, now: float, lease: float) -> bool:
        return self._write(inbox.forget, ns, id, now, lease)

    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        return self._purge(ns, now, received_before, limit, pause=_PURGE_PAUSE)

    def _purge(
        self, ns: str | None, now: float, received_before: float | None, limit: int, *, pause: float = 0.0
    ) -> int:
        """Up to ``limit`` rows in transactions of ``_PURGE_BATCH``, so writers get in between;
        with a ``pause`` (an explicit purge), each full one is checkpointed, then the lock left
        alone ``pause`` times as long as both took."""
        removed = 0
        while removed < limit:
            batch = min(_PURGE_BATCH, limit - removed)
            started = time.monotonic()
            # Not waiting for the disk: a purge lost in a power cut is done again.
            done = self._write(inbox.purge, ns, now, received_before, batch, durable=False)
            removed += done
            if done < batch:
                break
            if pause:
                # A batch's rows are scattered over the file: about 100 pages, what ten kept
                # deliveries write. Copied back at once, outside the lock, so a long purge
                # never takes the WAL to SQLite's own checkpoint, which runs inside a commit
                # and holds every writer through the database's fsync.
                self.checkpoint()
                time.sleep(pause * (time.monotonic() - started))
        return removed

    def _maintain(self, seq: int, now: float) -> None:
        """Every ``_PURGE_EVERY`` log lines, sweep the rows past their retention, of every
        receiver, then checkpoint in a young process (:meth:`checkpoint`).

        After the delivery's own transaction, in batches: the lock is free
        between them. Best effort: what a failure leaves is swept next time.
        """
        if not seq or seq % _PURGE_EVERY:
            return
        try:
            self._purge(None, now, None, _SWEEP_MAX)
            self.checkpoint(young_only=True)
        except StoreUnavailable:
            log.debug("purging the SQLite store failed; trying again later", exc_info=True)
