"""The SQLite store's connections and short write transactions.

Two connections per thread and process (gunicorn forks after import),
one for the writes that wait for the disk and one for those that need
not (see ``Connections._write``).
Writers are serialised by an ``flock`` on a sidecar file before
``BEGIN IMMEDIATE`` (see ``_flock``), so concurrent gunicorn workers
never fall into SQLite's sleeping busy handler, which backs off for up to
100 ms a try and is what makes naive SQLite receivers stall for seconds.
The busy timeout stays as a bound for foreign lockers. Every wait, for
either, ends after ``timeout`` seconds: the store is unavailable and the
sender gets a 503.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, TypeVar

from ..core.errors import StoreUnavailable
from ._flock import WriterLock
from ._sqlite_schema import prepare
from .base import NOT_A_FILE, fork_lock, process_generation

T = TypeVar("T")

log = logging.getLogger("flask_hooks")

#: Each process checkpoints the WAL after this many of its commits (see ``_checkpoint``);
#: SQLite's own checkpoint stays as a backstop at a WAL of this many pages.
_CHECKPOINT_EVERY = 256
_BACKSTOP_PAGES = 10_000
#: What a WAL file is cut back to once checkpointed, so that a burst gives the disk its space back.
_WAL_KEEP = 4 * 1024 * 1024
#: After a write found the disk full, every commit is checkpointed until the disk has this much room.
_ROOM = 64 * 1024 * 1024
#: SQLite's result code for a write the disk had no room for (``sqlite3.SQLITE_FULL`` from Python 3.11).
_SQLITE_FULL = 13

#: The longest ``timeout``: SQLite's busy timeout is an int of milliseconds (and a
#: thread lock's wait cannot be much longer, ``threading.TIMEOUT_MAX``).
MAX_TIMEOUT = (2**31 - 1) / 1000

#: The (device, inode) of the database file, its ``-wal`` and its ``-shm``, as a connection opened them.
Files = tuple[tuple[int, int], ...]


class _Closer:
    """Closes a thread's connections when the thread ends (its slot of the store's
    ``threading.local`` goes, with this object), and forgets them in ``open``."""

    def __init__(self, conn: sqlite3.Connection, open: set[sqlite3.Connection]) -> None:
        self.conns, self.open = [conn], open
        open.add(conn)

    def add(self, conn: sqlite3.Connection) -> None:
        self.conns.append(conn)
        self.open.add(conn)

    def __del__(self) -> None:
        _close_all(self.conns)
        self.open.difference_update(self.conns)


def _disk_full(exc: BaseException) -> bool:
    """Whether SQLite (``SQLITE_FULL``; Python 3.10 has only its message) or the OS said no space."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)


def _file_name(path: str) -> bool:
    """Whether ``path`` is one the OS can be given: no NUL, and a lone surrogate only as
    ``os.fsdecode`` makes an undecodable byte of (``sqlite3`` encodes paths as it does)."""
    try:
        return b"\x00" not in os.fsencode(path)
    except UnicodeEncodeError:
        return False


def _close_all(conns: Iterable[sqlite3.Connection]) -> None:
    """Close ``conns`` ourselves: the garbage collector closes an open one with a
    ``ResourceWarning`` (Python 3.13), an error under ``pytest -W error`` in every
    test suite that builds an app, and so a store, per test."""
    for conn in list(conns):
        with suppress(sqlite3.Error):
            conn.close()


class Connections:
    """A SQLite file's connections, one per thread, and its writers' lock.

    The base of :class:`~flask_hooks.stores.sqlite.SqliteStore`: ``_write``
    runs a step as one write transaction, ``_read`` outside any.
    """

    def __init__(self, path: str, *, timeout: float, synchronous: str) -> None:
        if not _file_name(path):  # sqlite3.connect() would refuse it on every delivery
            raise ValueError("the path is no file name the OS takes (it has a NUL or a lone surrogate)")
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        # Not 0, which reads as "no limit" and never waits: every write that met another
        # thread's or worker's (a claim meeting a completion) would answer 503.
        if not 0 < timeout <= MAX_TIMEOUT:
            limit = f"{MAX_TIMEOUT:.0f}"
            raise ValueError(f"timeout must be a number of seconds above 0, at most {limit}, not {timeout!r}")
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ValueError(f"{path!r}: {NOT_A_FILE}")
        self.path = path
        # What a fenced write checks is still the file it opened (:meth:`_replaced`); the
        # -wal and -shm are where each connection finds them (see ``_connect``).
        self._paths = (path, path + "-wal", path + "-shm")
        self.timeout = timeout
        self.synchronous = synchronous.upper()
        #: The mode of the writes that need not wait for the disk (see ``_write``).
        self.relaxed = "NORMAL" if self.synchronous in ("FULL", "EXTRA") else self.synchronous
        #: Each thread's connections: ``cur`` in the configured mode, ``relaxed`` in the
        #: relaxed one (the same when they are equal), and the ``file`` they opened.
        self._local = threading.local()
        #: Every thread's open connections: closed when the store is collected. Its
        #: ``threading.local`` goes in the same collection, and its closers' turn may come
        #: after the connections' own finalizers, which warn.
        self._open: set[sqlite3.Connection] = set()
        weakref.finalize(self, _close_all, self._open)
        self._writers = WriterLock(path, timeout)
        self._generation = process_generation()
        self._commits = 0
        #: Whether the disk is short of room (see :meth:`_after_commit`), and whether a write
        #: found it full since it last had room (said once, in the log).
        self._full = self._told = False

    def _conn(self) -> threading.local:
        """This thread's connections, each with one cursor reused rather than one built per statement."""
        if process_generation() != self._generation:
            # Forked: the parent's connections, lock and flock fds are not ours. Dropped once,
            # by the first thread: another would drop the connections that one has since opened.
            with fork_lock():
                if process_generation() != self._generation:
                    self._generation = process_generation()
                    self._writers = WriterLock(self.path, self.timeout)
                    self._local = threading.local()
        local = self._local
        if getattr(local, "cur", None) is None:
            conn, local.file = self._connect(self.synchronous)
            self._look_for_room()
            local.cur = local.relaxed = conn.cursor()
            local.closer = _Closer(conn, self._open)
            if self.relaxed != self.synchronous:
                try:
                    relaxed = self._connect(self.relaxed)[0]
                except StoreUnavailable:
                    self._drop()
                    raise
                local.relaxed = relaxed.cursor()
                local.closer.add(relaxed)
        return local

    def _cursor(self) -> sqlite3.Cursor:
        cur: sqlite3.Cursor = self._conn().cur
        return cur

    def _connect(self, synchronous: str) -> tuple[sqlite3.Connection, Files]:
        """A new connection in that ``synchronous`` mode, and the files it opened."""
        conn = None
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP}")
            # Switching a new file to WAL needs an exclusive lock that SQLite
            # refuses at once (no busy wait) when workers race at start-up.
            self._writers.acquire()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                prepare(conn.cursor())
                conn.execute("COMMIT")
                # SQLite follows a symlinked file and keeps the -wal and -shm beside its target;
                # looked for beside the link, they were missing: a 503 for every delivery.
                real = os.path.realpath(self.path)
                self._paths = (self.path, real + "-wal", real + "-shm")
                files = self._files()
            finally:
                self._writers.release()
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            if not isinstance(exc, TimeoutError):  # else the writers' lock is busy: the usual 503
                # A wrong path, a permission, a file that is no SQLite database: until the
                # operator fixes it, every delivery gets a 503, so say which file and why.
                log.error("cannot open the SQLite store at %s: %s", self.path, exc)
            raise StoreUnavailable() from exc
        return conn, files

    def _write(
        self, work: Callable[..., T], *args: Any, durable: bool = True, fenced: bool | None = None
    ) -> T:
        """``work(cursor, *args)`` as one short write transaction, serialised across threads and processes.

        BEGIN, COMMIT or ROLLBACK and the error mapping in one place. It runs
        twice per delivery, so it is a plain call rather than a generator
        context manager, which cost several times as much.

        ``durable=False`` commits without waiting for the disk, on the thread's
        second connection, opened at ``synchronous = NORMAL`` (lost on a power
        cut, never on a crash; switching one connection's mode back and forth
        would compile the PRAGMA anew each time), for writes whose
        loss a power cut makes harmless anyway: a claim (the lease would
        have expired), a renewal, a release or a log line. Completions and
        handler marks, which stop a handler from running twice, wait for the
        disk, and commit only into the file that is still at ``path``.

        ``fenced`` (by default, ``durable``): commit only into the file still at
        ``path``. A claim is fenced though not durable: one taken in a replaced
        file would run the handler, and the retry that follows the completion's
        503 would claim in the new file and run it again.
        """
        local = self._conn()
        fenced = durable if fenced is None else fenced
        cur, replaced = local.cur if durable else local.relaxed, False
        try:
            self._writers.acquire()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    result = work(cur, *args)
                    replaced = fenced and self._replaced(local.file)
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
            if _disk_full(exc) and not self._told:
                self._full = self._told = True
                log.error(
                    "the disk of the SQLite store at %s is full: deliveries get 503 until it has room;"
                    " each write is then checkpointed, so the WAL does not take that room again",
                    self.path,
                )
            raise StoreUnavailable() from exc
        if replaced:
            # A deleted -wal's commits are still in this connection's: copied into the database.
            self._checkpoint(cur)
            self._reopen()
            raise StoreUnavailable()
        self._after_commit(cur)
        return result

    def _after_commit(self, cur: sqlite3.Cursor) -> None:
        """Checkpoint every ``_CHECKPOINT_EVERY`` commits; after each one while the disk is short of room.

        A checkpoint copies the WAL's pages into the database, which grows by
        the new ones: on a disk the WAL itself filled, there is no room for
        that, nothing can be checkpointed, and the store stays down until an
        operator frees more. So once a write found the disk full, the WAL
        never holds more than one transaction: when room is made, the next
        commit's checkpoint takes what the database needs, and the WAL's file
        is reused (then cut back to ``_WAL_KEEP``) instead of growing into it.
        Every process looks for itself, when it connects and every
        ``_CHECKPOINT_EVERY`` commits: one started after the disk filled
        (a restart, a new gunicorn worker) would let the WAL grow back.
        """
        self._commits += 1
        if self._full:
            self._checkpoint(cur)
        if self._commits % _CHECKPOINT_EVERY == 0:
            if not self._full:
                self._checkpoint(cur)
            self._look_for_room()

    def _look_for_room(self) -> None:
        """Whether the disk is short of room now (it stays as it was if the system cannot say)."""
        with suppress(OSError):
            room = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
            short = room.f_bavail * room.f_frsize < _ROOM
            if short and not self._full:
                log.warning(
                    "the disk of the SQLite store at %s has less than %d MiB free: each write is"
                    " checkpointed (about one more fsync each) until it has room",
                    self.path,
                    _ROOM // 2**20,
                )
            self._full, self._told = short, self._told and short

    def _files(self) -> Files:
        """The (device, inode) of the files now at ``path``; :class:`FileNotFoundError` if one is missing."""
        stats = [os.stat(path) for path in self._paths]
        return tuple((st.st_dev, st.st_ino) for st in stats)

    def _replaced(self, files: Files) -> bool:
        """Whether the file at ``path``, its ``-wal`` or its ``-shm``, is no longer the one opened.

        A connection keeps writing into a file that was deleted or renamed,
        while new connections open the file at the path: what was
        acknowledged into the old one is forgotten at the next restart.
        See "Unlinking or renaming a database file while in use" in SQLite's
        "How To Corrupt An SQLite Database File" (sqlite.org/howtocorrupt.html).
        The same for a deleted ``-wal`` ("Deleting a hot journal", ibid.): the
        commits not yet copied into the database are in a file no one else
        opens, and gone when this process stops. And for a deleted ``-shm``, the
        WAL's index: a process that opens the database next builds a new one,
        which this connection's commits never reach, so it would not see them.
        """
        try:
            return self._files() != files
        except FileNotFoundError:
            return True

    def checkpoint(self, *, young_only: bool = False) -> None:
        """A passive checkpoint now, after a write much larger than a delivery's (a purge batch).

        ``young_only``: only in a process that has not made ``_CHECKPOINT_EVERY``
        commits, at the store's sweep (a count of the database's): workers
        restarted often (``--max-requests``, RQ's process per job) never reach
        their own cadence, and the WAL grew to SQLite's own checkpoint, run
        inside a commit while every writer waits.
        """
        if not young_only or self._commits < _CHECKPOINT_EVERY:
            self._checkpoint(self._conn().relaxed)

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
        local = self._local
        cur, relaxed = getattr(local, "cur", None), getattr(local, "relaxed", None)
        local.cur = local.relaxed = local.closer = None
        for each in (cur, None if relaxed is cur else relaxed):
            if each is not None:
                with suppress(sqlite3.Error):
                    each.connection.close()

    def _reopen(self) -> None:
        """The file at ``path`` is not the one opened: every thread opens that one next."""
        log.error(
            "the SQLite file at %s, or its -wal or -shm, was replaced or removed while in use: opening the"
            " files now at that path (stop the app before moving, restoring or deleting them)",
            self.path,
        )
        self._drop()
        self._local = threading.local()  # every other thread reconnects on its next call too

    def _read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(cursor, *args)`` outside any transaction: one WAL snapshot per statement,
        of the file now at ``path`` (not what a replaced one held)."""
        try:
            local = self._conn()
            if self._replaced(local.file):
                self._reopen()
                local = self._conn()
            # ``local`` held while ``work`` runs: another thread's reopen drops the store's
            # thread slots, and with the last reference to this one its closer would go.
            return work(local.cur, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable() from exc

    def close(self) -> None:
        self._drop()
        if self._generation == process_generation():
            self._writers.close()
