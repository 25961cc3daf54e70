"""``sqlite:///path``: the embedded default, correct across processes.

Writers are serialised by an ``flock`` on a sidecar file before
``BEGIN IMMEDIATE`` (see ``_flock``), so concurrent gunicorn workers
never fall into SQLite's sleeping busy handler, which backs off for up to
100 ms a try and is what makes naive SQLite receivers stall for seconds.
The busy timeout stays as a bound for foreign lockers. Every wait, for
either, ends after ``timeout`` seconds: the store is unavailable and the
sender gets a 503.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar, cast

from ..core.errors import LeaseLost, StoreUnavailable
from ._flock import WriterLock
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
    process_generation,
)

T = TypeVar("T")

log = logging.getLogger("flask_hooks")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hooks_deliveries (
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL,
    handlers TEXT NOT NULL DEFAULT '{}',
    reply TEXT,
    outcome TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (id, ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hooks_deliveries_expiry ON hooks_deliveries (expires_at);
CREATE TABLE IF NOT EXISTS hooks_log (
    seq INTEGER PRIMARY KEY,
    ns TEXT NOT NULL,
    status TEXT NOT NULL,
    entry TEXT NOT NULL
);
"""

# hooks_log.seq has no AUTOINCREMENT: only the oldest rows are ever deleted, so
# rowids stay increasing, and AUTOINCREMENT costs an extra page write per line.
# Nor has it an index on ns: the table is trimmed to about log_size rows per
# receiver, so reading or trimming it scans a few thousand rows at most, while
# an index would cost every delivery an extra b-tree insert.

_INSERT_NEW = (
    "INSERT OR IGNORE INTO hooks_deliveries (ns, id, state, token, lease_until, expires_at)"
    " VALUES (?, ?, 'inflight', ?, ?, ?)"
)

#: Each process checkpoints the WAL after this many of its commits (see ``_checkpoint``);
#: SQLite's own checkpoint stays as a backstop at a WAL of this many pages.
_CHECKPOINT_EVERY = 256
_BACKSTOP_PAGES = 10_000

#: Why ``:memory:``, ``""`` and ``file:`` URIs are refused (SQLite docs, "In-Memory Databases").
NOT_A_FILE = (
    "give a file path, or memory:// for a process-local store: an in-memory SQLite database"
    " is one per connection (here, per thread) and would deduplicate nothing"
)

#: Expired rows are purged in a bounded batch by every completion whose log line's
#: rowid is a multiple of this: the count is the database's, not one process's, so
#: workers restarted every few hundred requests purge too.
_PURGE_EVERY = 256
_PURGE_BATCH = 500


class SqliteStore(DedupeStore):
    """A store in one SQLite file (WAL), shared by every process that opens it.

    ``synchronous`` is ``FULL`` by default so an acknowledged delivery
    survives a power cut, not only a crash; ``NORMAL`` trades that for
    speed. Either way claims, renewals, releases and log lines commit at
    ``NORMAL`` at most: losing one in a power cut changes nothing (a lost
    claim is an expired lease), and not waiting for the disk keeps the
    writers' lock short, which is most of what concurrent workers wait for.
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 2.0,
        synchronous: str = "FULL",
        log_size: int = 1000,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        if not 0 <= timeout < math.inf:
            raise ValueError(f"timeout must be a finite number of seconds, not {timeout!r}")
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ValueError(f"{path!r}: {NOT_A_FILE}")
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous.upper()
        relaxed = "NORMAL" if self.synchronous in ("FULL", "EXTRA") else self.synchronous
        #: The pragma for durable writes and for the others (see ``_write``).
        self._sync_modes = {
            True: f"PRAGMA synchronous={self.synchronous}",
            False: f"PRAGMA synchronous={relaxed}",
        }
        self.log_size = log_size
        #: Each thread's connection: ``cur``, ``mode`` (its synchronous pragma), ``file``.
        self._local = threading.local()
        self._writers = WriterLock(path, timeout)
        self._generation = process_generation()
        self._commits = 0

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path!r}>"

    # Connections: one per thread and process (gunicorn forks after import).

    def _conn(self) -> threading.local:
        """This thread's connection, with one cursor reused rather than one built per statement."""
        generation = process_generation()
        if generation != self._generation:
            # Forked: the parent's connections, lock and flock fds are not ours.
            self._generation = generation
            self._writers = WriterLock(self.path, self.timeout)
            self._local = threading.local()
        local = self._local
        if getattr(local, "cur", None) is None:
            conn, local.file = self._connect()
            local.mode = self._sync_modes[True]
            local.cur = conn.cursor()
        return local

    def _cursor(self) -> sqlite3.Cursor:
        cur: sqlite3.Cursor = self._conn().cur
        return cur

    def _connect(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        """A new connection and the (device, inode) of the file it opened."""
        conn = None
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(self._sync_modes[True])
            conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            # Switching a new file to WAL needs an exclusive lock that SQLite
            # refuses at once (no busy wait) when workers race at start-up.
            self._writers.acquire()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("COMMIT")
                st = os.stat(self.path)
            finally:
                self._writers.release()
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreUnavailable() from exc
        return conn, (st.st_dev, st.st_ino)

    def _write(self, work: Callable[..., T], *args: Any, durable: bool = True) -> T:
        """``work(cursor, *args)`` as one short write transaction, serialised across threads and processes.

        BEGIN, COMMIT or ROLLBACK and the error mapping in one place. It runs
        twice per delivery, so it is a plain call rather than a generator
        context manager, which cost several times as much.

        ``durable=False`` commits without waiting for the disk (``synchronous
        = NORMAL``: lost on a power cut, never on a crash), for writes whose
        loss a power cut makes harmless anyway: a claim (the lease would
        have expired), a renewal, a release or a log line. Completions and
        handler marks, which stop a handler from running twice, wait for the
        disk, and commit only into the file that is still at ``path``.
        """
        local = self._conn()
        cur, replaced = local.cur, False
        try:
            self._writers.acquire()
            try:
                mode = self._sync_modes[durable]
                if local.mode != mode:
                    cur.execute(mode)
                    local.mode = mode
                cur.execute("BEGIN IMMEDIATE")
                try:
                    result = work(cur, *args)
                    replaced = durable and self._replaced(local.file)
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("ROLLBACK" if replaced else "COMMIT")
            finally:
                self._writers.release(close_files=replaced)
        except TimeoutError as exc:  # the lock: the connection is fine
            raise StoreUnavailable() from exc
        except (sqlite3.Error, OSError) as exc:
            self._drop()
            raise StoreUnavailable() from exc
        if replaced:
            log.error(
                "the SQLite file at %s was replaced or removed while in use: answering 503 and"
                " opening the file now at that path (stop the app before moving or restoring it)",
                self.path,
            )
            self._drop()
            self._local = threading.local()  # every other thread reconnects on its next call too
            raise StoreUnavailable()
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0:
            self._checkpoint(cur)
        return result

    def _replaced(self, file: tuple[int, int]) -> bool:
        """Whether the file at ``path`` is no longer the one this connection opened.

        A connection keeps writing into a file that was deleted or renamed,
        while new connections open the file at the path: what was
        acknowledged into the old one is forgotten at the next restart.
        See "Unlinking or renaming a database file while in use" in SQLite's
        "How To Corrupt An SQLite Database File" (sqlite.org/howtocorrupt.html).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != file

    @staticmethod
    def _checkpoint(cur: sqlite3.Cursor) -> None:
        """Copy the WAL back into the database, outside the writers' lock.

        SQLite's own checkpoint runs inside the commit that crosses its
        threshold, so every other writer waits for its fsync of the database.
        A passive one waits for nobody; one that fails is only late.
        """
        with suppress(sqlite3.Error):
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _drop(self) -> None:
        cur = getattr(self._local, "cur", None)
        self._local.cur = None
        if cur is not None:
            with suppress(sqlite3.Error):
                cur.connection.close()

    # The state machine: each public method is one transaction of its private twin.

    def claim(self, ns: str, id: str, *, now: float, lease: float, ttl: float) -> Claim:
        return self._write(self._claim, ns, id, now, lease, ttl, durable=False)

    def _claim(self, db: sqlite3.Cursor, ns: str, id: str, now: float, lease: float, ttl: float) -> Claim:
        token = new_token()
        values = (ns, id, token, now + lease, now + max(ttl, lease))
        # The usual case, a delivery never seen: one statement, no SELECT first.
        if db.execute(_INSERT_NEW, values).rowcount == 1:
            return Claim("new", token)
        state, lease_until, expires_at, handlers, reply, outcome = db.execute(
            "SELECT state, lease_until, expires_at, handlers, reply, outcome"
            " FROM hooks_deliveries WHERE ns = ? AND id = ?",
            (ns, id),
        ).fetchone()
        if expires_at <= now:
            handlers = "{}"  # an expired record starts afresh
        elif state == "done":
            return Claim("done", reply=decode_reply(reply), outcome=outcome)
        elif state == "inflight" and lease_is_live(lease_until, now, lease):
            return Claim("inflight", retry_after=lease_until - now)
        db.execute(
            "UPDATE hooks_deliveries SET state = 'inflight', token = ?, lease_until = ?, expires_at = ?,"
            " handlers = ?, reply = NULL, outcome = '' WHERE ns = ? AND id = ?",
            (token, *values[3:], handlers, ns, id),
        )
        return Claim("new", token, decode_handlers(handlers))

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        self._write(self._mark, ns, id, token, handler, reply)

    def _mark(
        self, db: sqlite3.Cursor, ns: str, id: str, token: str, handler: str, reply: Reply | None
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
            "UPDATE hooks_deliveries SET lease_until = ?, expires_at = max(expires_at, ?)"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (until, until, ns, id, token),
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
        self._write(self._complete, ns, id, token, outcome, reply, now, ttl, entry)

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
    ) -> None:
        cur = db.execute(
            "UPDATE hooks_deliveries SET state = 'done', token = '', reply = ?, outcome = ?, expires_at = ?"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (encode_reply(reply), outcome, now + ttl, ns, id, token),
        )
        if cur.rowcount != 1:
            raise LeaseLost()
        if entry is not None and self._append(db, ns, entry) % _PURGE_EVERY == 0:
            db.execute(
                "DELETE FROM hooks_deliveries WHERE (ns, id) IN (SELECT ns, id FROM"
                " hooks_deliveries WHERE expires_at <= ? LIMIT ?)",
                (now, _PURGE_BATCH),
            )

    def release(self, ns: str, id: str, token: str, *, now: float) -> None:
        self._write(self._free, ns, id, token, durable=False)

    @staticmethod
    def _free(db: sqlite3.Cursor, ns: str, id: str, token: str) -> None:
        db.execute(
            "UPDATE hooks_deliveries SET state = 'free', token = '', lease_until = 0"
            " WHERE ns = ? AND id = ? AND state = 'inflight' AND token = ?",
            (ns, id, token),
        )

    # The delivery log.

    def _append(self, db: sqlite3.Cursor, ns: str, entry: LogEntry) -> int:
        """Add a log line, trimming the log now and then; the line's rowid."""
        sql = "INSERT INTO hooks_log (ns, status, entry) VALUES (?, ?, ?)"
        seq = cast(int, db.execute(sql, (ns, entry.status, entry.to_json())).lastrowid)
        if seq % 64 == 0:
            db.execute(
                "DELETE FROM hooks_log WHERE ns = ? AND seq <= (SELECT seq FROM hooks_log"
                " WHERE ns = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (ns, ns, self.log_size),
            )
        return seq

    def log(self, ns: str, entry: LogEntry) -> None:
        self._write(self._append, ns, entry, durable=False)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        sql = "SELECT entry FROM hooks_log WHERE ns = ?"
        args: list[object] = [ns]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(min(limit, self.log_size))
        try:
            rows = self._cursor().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable() from exc
        return [LogEntry.from_json(row[0]) for row in rows]

    def close(self) -> None:
        self._drop()
        if self._generation == process_generation():
            self._writers.close()
