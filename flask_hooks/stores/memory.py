"""``memory://``: one process, for tests and demos."""

from __future__ import annotations

import collections
import logging
import threading
from typing import NamedTuple

from ..core.errors import LeaseLost
from .base import Claim, DedupeStore, LogEntry, Reply, lease_is_live, new_token, process_generation

#: Expired records are swept every this many claims.
_SWEEP_EVERY = 4096


class _Record(NamedTuple):
    # Immutable and replaced on change: a tuple of plain values is untracked
    # by the cyclic GC, so a large store does not slow every collection.
    state: str
    token: str = ""
    lease_until: float = 0.0
    expires_at: float = 0.0
    handlers: tuple[tuple[str, Reply | None], ...] = ()
    reply: Reply | None = None
    outcome: str = ""


class MemoryStore(DedupeStore):
    """A dict behind a lock; the same state machine as the durable stores."""

    def __init__(self, *, log_size: int = 1000) -> None:
        self.log_size = log_size
        self._generation = process_generation()
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}
        self._logs: dict[str, collections.deque[LogEntry]] = {}
        self._claims = 0

    def claim(self, ns: str, id: str, *, now: float, lease: float, ttl: float) -> Claim:
        key = (ns, id)
        if self._generation != process_generation():
            self._forked()
        with self._lock:
            self._claims += 1
            if self._claims % _SWEEP_EVERY == 0:
                self._sweep(now)
            rec = self._records.get(key)
            handlers: tuple[tuple[str, Reply | None], ...] = ()
            if rec is not None and rec.expires_at > now:
                if rec.state == "done":
                    return Claim("done", reply=rec.reply, outcome=rec.outcome)
                if rec.state == "inflight" and lease_is_live(rec.lease_until, now, lease):
                    return Claim("inflight", retry_after=rec.lease_until - now)
                handlers = rec.handlers
            token = new_token()
            self._records[key] = _Record("inflight", token, now + lease, now + max(ttl, lease), handlers)
        return Claim("new", token=token, handlers=dict(handlers))

    def _forked(self) -> None:
        """Each forked worker (gunicorn -w 4) has its own copy: duplicates that
        reach another worker run again. Said once per process, at first use."""
        self._generation = process_generation()
        self._lock = threading.Lock()
        logging.getLogger("flask_hooks").warning(
            "memory:// is used in a forked process (several workers?): each process dedupes"
            " only what it sees itself; use sqlite:/// or redis:// for more than one process"
        )

    def _sweep(self, now: float) -> None:
        expired = [key for key, rec in self._records.items() if rec.expires_at <= now]
        for key in expired:
            del self._records[key]

    def _owned(self, key: tuple[str, str], token: str) -> _Record:
        rec = self._records.get(key)
        if rec is None or rec.state != "inflight" or rec.token != token:
            raise LeaseLost()
        return rec

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        key = (ns, id)
        with self._lock:
            rec = self._owned(key, token)
            self._records[key] = rec._replace(handlers=(*rec.handlers, (handler, reply)))

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        key = (ns, id)
        with self._lock:
            rec = self._owned(key, token)
            self._records[key] = rec._replace(
                lease_until=now + lease, expires_at=max(rec.expires_at, now + lease)
            )

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
        key = (ns, id)
        with self._lock:
            self._owned(key, token)
            self._records[key] = _Record("done", "", 0.0, now + ttl, (), reply, outcome)
            if entry is not None:
                self._append(ns, entry)

    def release(self, ns: str, id: str, token: str, *, now: float) -> None:
        key = (ns, id)
        with self._lock:
            rec = self._records.get(key)
            if rec is not None and rec.state == "inflight" and rec.token == token:
                self._records[key] = rec._replace(state="free", token="", lease_until=0.0)

    def _append(self, ns: str, entry: LogEntry) -> None:
        log = self._logs.get(ns)
        if log is None:
            log = self._logs[ns] = collections.deque(maxlen=self.log_size)
        log.append(entry)

    def log(self, ns: str, entry: LogEntry) -> None:
        with self._lock:
            self._append(ns, entry)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        with self._lock:
            entries = list(reversed(self._logs.get(ns, ())))
        if status is not None:
            entries = [e for e in entries if e.status == status]
        return entries[:limit]
