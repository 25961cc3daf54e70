"""``memory://``: one process, for tests and demos."""

from __future__ import annotations

import bisect
import collections
import logging
import threading
from collections.abc import Collection
from typing import NamedTuple

from ..core.errors import InFlight, LeaseLost
from ..core.inbox import Kept, Stored, bounded, type_matches
from .base import Claim, DedupeStore, LogEntry, Reply, lease_is_live, new_token, process_generation

#: Expired records are swept every this many claims.
_SWEEP_EVERY = 4096


class _Record(NamedTuple):
    # Immutable and replaced on change: a tuple of plain values is untracked
    # by the cyclic GC, so a large store does not slow every collection.
    state: str
    token: str = ""
    lease_until: float = 0.0
    #: Until when the record counts as a duplicate (the dedupe TTL).
    expires_at: float = 0.0
    handlers: tuple[tuple[str, Reply | None], ...] = ()
    reply: Reply | None = None
    outcome: str = ""
    kept: Kept | None = None
    #: Until when the record is kept at all (the inbox's retention).
    retained_until: float = 0.0
    attempts: tuple[LogEntry, ...] = ()
    status: str = "in-flight"


class MemoryStore(DedupeStore):
    """A dict behind a lock; the same state machine as the durable stores."""

    def __init__(self, *, log_size: int = 1000) -> None:
        self.log_size = log_size
        self._generation = process_generation()
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}
        self._logs: dict[str, collections.deque[LogEntry]] = {}
        #: Per receiver, the kept deliveries' ``(received_at, id)`` in order: pages are slices.
        self._order: dict[str, list[tuple[float, str]]] = {}
        self._claims = 0
        self._warned = -1  # the process generation last told that other processes serve the app

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
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
            expires = now + (ttl if ttl > lease else lease)
            kept, retained = keep, expires
            attempts: tuple[LogEntry, ...] = ()
            if rec is not None:  # a retry, or a record past its dedupe TTL: keep its history
                kept = rec.kept or keep
                retained, attempts = max(rec.retained_until, expires), rec.attempts
            if keep is not None:
                retained = max(retained, now + keep.retention)
                if rec is None or rec.kept is None:
                    bisect.insort(self._order.setdefault(ns, []), (keep.received_at, id))
            self._records[key] = _Record(
                "inflight", token, now + lease, expires, handlers, None, "", kept, retained, attempts
            )
        return Claim("new", token=token, handlers=dict(handlers))

    def _forked(self) -> None:
        """Each forked worker (gunicorn -w 4 --preload) has its own copy: duplicates
        that reach another worker run again. Said once per process, at first use."""
        self._generation = process_generation()
        self._lock = threading.Lock()
        self.shared_by_processes("is used in a forked process (several workers?)")

    def shared_by_processes(self, how: str = "is served by several processes (wsgi.multiprocess)") -> None:
        """Warn, once per process, that other processes serve the app with stores of their own.

        A worker that builds the app after the fork (gunicorn without
        ``--preload``) was never forked with a store: the WSGI server's
        ``wsgi.multiprocess`` says so instead (the receiver's view asks).
        """
        if self._warned == process_generation():
            return
        self._warned = process_generation()
        logging.getLogger("flask_hooks").warning(
            "memory:// %s: each process dedupes only what it sees itself;"
            " use sqlite:/// or redis:// for more than one process",
            how,
        )

    def _sweep(self, now: float) -> None:
        expired = [key for key, rec in self._records.items() if self._gone(rec, now)]
        self._remove(expired)

    def _remove(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            del self._records[key]
        for ns in {ns for ns, _ in keys}:
            self._order[ns] = [entry for entry in self._order.get(ns, ()) if (ns, entry[1]) in self._records]

    @staticmethod
    def _gone(rec: _Record, now: float, received_before: float | None = None) -> bool:
        if rec.state == "inflight" and rec.lease_until > now:
            return False
        if max(rec.expires_at, rec.retained_until) <= now:
            return True
        return received_before is not None and rec.kept is not None and rec.kept.received_at < received_before

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
            rec = self._owned(key, token)
            expires = now + ttl
            retained = rec.retained_until if rec.retained_until > expires else expires
            self._records[key] = _Record(
                "done",
                "",
                0.0,
                expires,
                rec.handlers,
                reply,
                outcome,
                rec.kept,
                retained,
                rec.attempts,
                outcome,
            )
            if entry is not None:
                self._append(ns, entry)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        key = (ns, id)
        with self._lock:
            rec = self._records.get(key)
            if rec is not None and rec.state == "inflight" and rec.token == token:
                self._records[key] = rec._replace(state="free", token="", lease_until=0.0, status="failed")
            if entry is not None:
                self._append(ns, entry)

    def _append(self, ns: str, entry: LogEntry) -> None:
        log = self._logs.get(ns)
        if log is None:
            log = self._logs[ns] = collections.deque(maxlen=self.log_size)
        log.append(entry)
        key = (ns, entry.id or "")
        rec = self._records.get(key)
        if rec is not None and rec.kept is not None:
            self._records[key] = rec._replace(attempts=bounded(rec.attempts, entry))

    def log(self, ns: str, entry: LogEntry) -> None:
        with self._lock:
            self._append(ns, entry)

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        with self._lock:
            entries = list(reversed(self._logs.get(ns, ())))
        if status is not None:
            entries = [e for e in entries if e.status == status]
        return entries[:limit]

    # The inbox.

    @staticmethod
    def _stored(id: str, rec: _Record) -> Stored | None:
        kept = rec.kept
        if kept is None:
            return None
        return Stored(
            id,
            kept.type,
            kept.body,
            kept.headers,
            kept.received_at,
            kept.secret_index,
            rec.status,
            rec.lease_until if rec.state == "inflight" else 0.0,
            dict(rec.handlers),
            rec.attempts,
            max(rec.expires_at, rec.retained_until),
        )

    def get(self, ns: str, id: str) -> Stored | None:
        with self._lock:
            rec = self._records.get((ns, id))
        return None if rec is None else self._stored(id, rec)

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
        found: list[Stored] = []
        with self._lock:
            order = self._order.get(ns, [])
            end = len(order) if before is None else bisect.bisect_left(order, before)
            for position in range(end - 1, -1, -1):  # newest first, without copying the index
                at, id = order[position]
                if since is not None and at < since:
                    break
                rec = self._records.get((ns, id))
                stored = None if rec is None else self._stored(id, rec)
                if (
                    stored is not None
                    and stored.kept_at(now)
                    and (until is None or at < until)
                    and (status is None or stored.status_at(now) == status)
                    and type_matches(type, stored.type)
                ):
                    found.append(stored)
                    if len(found) >= limit:
                        break
        return found

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
        key = (ns, id)
        with self._lock:
            rec = self._records.get(key)
            if rec is None or rec.kept is None:
                raise LookupError(id)
            if rec.state == "inflight" and lease_is_live(rec.lease_until, now, lease):
                return Claim("inflight", retry_after=rec.lease_until - now)
            if rec.state == "done" and not rerun:
                return Claim("done", reply=rec.reply, outcome=rec.outcome)
            prior = (rec.reply, rec.outcome) if rec.state == "done" else (None, "")
            handlers = tuple((k, v) for k, v in rec.handlers if k not in rerun)
            if rec.state == "done":
                marked = {k for k, _ in handlers}
                handlers += tuple((k, None) for k in keep if k not in marked and k not in rerun)
            token = new_token()
            self._records[key] = rec._replace(
                state="inflight",
                token=token,
                lease_until=now + lease,
                expires_at=max(rec.expires_at, now + lease),
                handlers=handlers,
                status="in-flight",
            )
        return Claim("new", token=token, handlers=dict(handlers), reply=prior[0], outcome=prior[1])

    def forget(self, ns: str, id: str, *, now: float, lease: float) -> bool:
        with self._lock:
            rec = self._records.get((ns, id))
            if rec is None:
                return False
            if rec.state == "inflight" and lease_is_live(rec.lease_until, now, lease):
                raise InFlight(after=rec.lease_until - now)
            self._remove([(ns, id)])
            return True

    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        with self._lock:
            gone = [
                key
                for key, rec in self._records.items()
                if key[0] == ns and self._gone(rec, now, received_before)
            ][:limit]
            self._remove(gone)
        return len(gone)
