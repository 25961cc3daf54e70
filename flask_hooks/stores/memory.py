"""``memory://``: one process, for tests and demos."""

from __future__ import annotations

import collections
import dataclasses
import threading

from ..core.errors import LeaseLost
from .base import Claim, DedupeStore, LogEntry, Reply, new_token


@dataclasses.dataclass
class _Record:
    state: str = "free"
    token: str = ""
    lease_until: float = 0.0
    expires_at: float = 0.0
    handlers: dict[str, Reply | None] = dataclasses.field(default_factory=dict)
    reply: Reply | None = None
    outcome: str = ""


class MemoryStore(DedupeStore):
    """A dict behind a lock; the same state machine as the durable stores."""

    def __init__(self, *, log_size: int = 1000) -> None:
        self.log_size = log_size
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}
        self._logs: dict[str, collections.deque[LogEntry]] = {}

    def claim(self, ns: str, id: str, *, now: float, lease: float, ttl: float) -> Claim:
        with self._lock:
            rec = self._records.get((ns, id))
            if rec is None or rec.expires_at <= now:
                rec = self._records[(ns, id)] = _Record()
            if rec.state == "done":
                return Claim("done", reply=rec.reply, outcome=rec.outcome)
            if rec.state == "inflight" and rec.lease_until > now:
                return Claim("inflight", retry_after=rec.lease_until - now)
            rec.state, rec.token = "inflight", new_token()
            rec.lease_until, rec.expires_at = now + lease, now + max(ttl, lease)
            return Claim("new", token=rec.token, handlers=dict(rec.handlers))

    def _owned(self, ns: str, id: str, token: str, now: float) -> _Record:
        rec = self._records.get((ns, id))
        if rec is None or rec.state != "inflight" or rec.token != token:
            raise LeaseLost()
        return rec

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        with self._lock:
            self._owned(ns, id, token, now).handlers[handler] = reply

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
        with self._lock:
            rec = self._owned(ns, id, token, now)
            rec.state, rec.token, rec.reply, rec.outcome = "done", "", reply, outcome
            rec.expires_at = now + ttl
            if entry is not None:
                self._append(ns, entry)

    def release(self, ns: str, id: str, token: str, *, now: float) -> None:
        with self._lock:
            rec = self._records.get((ns, id))
            if rec is not None and rec.state == "inflight" and rec.token == token:
                rec.state, rec.token, rec.lease_until = "free", "", 0.0

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
