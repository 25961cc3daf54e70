"""The SQLite store's writers' lock: ``flock`` on two sidecar files, every wait bounded.

``flock`` has no timeout, and a blocking one never returns while the
holder is stopped (``SIGSTOP``, a frozen cgroup). So a contended lock is
polled with ``LOCK_NB`` between short sleeps, until a deadline; the
uncontended case is one non-blocking call, as cheap as a blocking one.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from contextlib import suppress

#: Seconds between tries. The gate holder polls the lock often: the lock is
#: idle until its next try. Gate waiters start slower and shrink to the floor,
#: so those waiting longest try most often. After ``_PATIENCE`` the holder is
#: stuck (stopped, frozen, a stalled disk) and the sleeps grow to ``_MAX_SLEEP``.
_LOCK_SLEEP = 30e-6
_GATE_SLEEP, _GATE_FLOOR, _SHRINK = 200e-6, 30e-6, 0.7
_PATIENCE = 0.02
_MAX_SLEEP = 1e-3


def _flock(fd: int, deadline: float, sleep: float, floor: float) -> None:
    """``LOCK_EX`` on ``fd`` before ``deadline`` (``time.monotonic``), else :class:`TimeoutError`."""
    patience = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            now = time.monotonic()
        if now >= deadline:
            raise TimeoutError("another process holds the SQLite store's writers' lock")
        if not patience:
            patience = now + _PATIENCE
        elif now < patience:
            sleep = max(sleep * _SHRINK, floor)
        else:
            sleep = min(sleep * 2, _MAX_SLEEP)
        time.sleep(min(sleep, deadline - now))


class WriterLock:
    """Serialises writers: this process's threads, then other processes, each wait bounded.

    ``flock`` belongs to an open file, which the threads of a process
    share, so a thread lock comes first. ``flock`` is not fair: a process
    that releases the lock and takes it again at once (claim, then
    complete) wins before a waiter's next try, and can starve it for many
    transactions. So the lock is taken through a gate: a waiter holds the
    gate while it waits, and whoever comes next must pass the gate first,
    which hands the lock over in turn. Polling is not fair either (a
    newcomer trying often beats a waiter that tries seldom), hence the
    gate waiters' sleeps that shrink as they wait.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        #: (gate, lock) file descriptors, opened on first use.
        self._fds: tuple[int, int] | None = None
        # A store dropped without close() (an app per test) must not keep its two files
        # open until the process ends: hundreds of tests would run out of descriptors.
        self._open_fds: list[int] = []
        weakref.finalize(self, _close_fds, self._open_fds, os.getpid())

    def acquire(self) -> None:
        """Take the lock within ``timeout`` seconds, else :class:`TimeoutError`."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise TimeoutError("another thread holds the SQLite store's writers' lock")
        try:
            if self._fds is None:
                self._fds = self._open()
                self._open_fds[:] = self._fds
            gate, lock = self._fds
            _flock(gate, deadline, _GATE_SLEEP, _GATE_FLOOR)
            try:
                _flock(lock, deadline, _LOCK_SLEEP, _LOCK_SLEEP)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self, *, close_files: bool = False) -> None:
        """Let the next writer in; ``close_files``: open the sidecar files afresh next time."""
        try:
            if self._fds is not None:
                fcntl.flock(self._fds[1], fcntl.LOCK_UN)
                if close_files:
                    self._close()
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the sidecar files, unless another thread is writing (then they stay open)."""
        if self._thread_lock.acquire(timeout=self.timeout):
            try:
                self._close()
            finally:
                self._thread_lock.release()

    def _open(self) -> tuple[int, int]:
        # Beside the database itself, as SQLite's own files: every link to it shares one lock.
        base = os.path.realpath(self.path)
        gate = os.open(base + ".gate", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            return gate, os.open(base + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except BaseException:
            os.close(gate)
            raise

    def _close(self) -> None:
        fds, self._fds = self._fds, None
        self._open_fds.clear()
        for fd in fds or ():
            os.close(fd)


def _close_fds(fds: list[int], pid: int) -> None:
    """A collected lock's files; in a forked child they are the parent's, and stay open."""
    if os.getpid() == pid:
        for fd in fds:
            with suppress(OSError):
                os.close(fd)
    fds.clear()
