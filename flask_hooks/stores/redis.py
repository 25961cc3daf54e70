"""``redis://host:port/db``: the store for receivers on many machines.

Every transition is one Lua script, so it is atomic on the server. Times
come from the receiver's clock (``now``) and are stored in the record as
the lease and expiry deadlines; Redis's own clock drives ``PEXPIRE``,
which removes a record once nobody can need it, and tells a command that
arrived late from a lease written ahead (``_redis_scripts._HORIZON``). Deadlines are computed in
Python and passed as strings so Lua's number formatting never rounds them.

The key layout (a kept delivery's body and attempts in keys of their own,
an index sorted by ``received_at``) and the scripts are in ``_redis_scripts``,
reading their records and answers in ``_redis_records``;
every key has the receiver's ``{ns}`` hash tag, so one cluster slot. The
client, and the guard that refuses the servers described below, are in
``_redis_conn``; here, the state machine, the delivery log and the inbox.

Redis may also delete keys on its own: with ``maxmemory`` set, every
``maxmemory-policy`` but ``noeviction`` evicts keys when memory runs out,
and the ``volatile-*`` ones pick exactly keys with a TTL, which all of ours
have (https://redis.io/docs/latest/develop/reference/eviction/). An evicted
record is a delivery forgotten: its resend runs the handlers again. So the
store refuses such a server unless told ``allow_eviction``.

A replica forgets too: one made writable (``replica-read-only no``) drops
what it was written when it resyncs from its master (redis.conf says so at
``replica-read-only``). The store refuses a replica always.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from ..core.errors import ConfigError, InFlight, LeaseLost, StoreUnavailable
from ..core.inbox import MAX_ATTEMPTS, Kept, Stored, encode_headers, type_matches
from . import _redis_scripts as lua
from ._redis_checks import check_url
from ._redis_conn import Connections, log, resend_delay
from ._redis_records import answer as _answer
from ._redis_records import stored as _stored
from ._redis_records import text as _text
from .base import CLOCK_SKEW, Claim, DedupeStore, LogEntry, Reply, encode_reply, new_token
from .url import NOT_A_URL, masked_url

if TYPE_CHECKING:
    from redis import Redis


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


#: Index members a query or purge reads per round trip.
_PAGE = 100
#: Every this many kept deliveries a store claims, it sweeps the receiver's oldest
#: ``2 * _SWEEP_EVERY`` index members (twice the inflow, so a backlog shrinks).
_SWEEP_EVERY = 64


#: The record's fields a query's filters read (:meth:`Stored.status_at`, ``kept_at``, the type).
_FILTERED = ("received_at", "state", "status", "lease_until", "retained_until", "type")


def _present(values: list[Any]) -> dict[str, Any]:
    """``HMGET``'s answer as the record's fields it found."""
    return {name: value for name, value in zip(_FILTERED, values, strict=True) if value is not None}


def _fenced(out: Any, ns: str, id: str) -> None:
    """A mark's, renewal's or completion's answer: 1 done, 0 the claim is another's, -1 no record."""
    if out == -1:
        log.error(
            "the record of %s %s was removed while it was claimed: the Redis server lost it (FLUSHDB or"
            " FLUSHALL, a restart without persistence, a failover) or it expired; a resend of it runs"
            " its handlers again",
            ns,
            id,
        )
    if out != 1:
        raise LeaseLost()


class RedisStore(Connections, DedupeStore):
    """A store in Redis; ``client_or_url`` is a ``redis.Redis`` or a URL.

    ``key_prefix`` separates several applications sharing one database. A
    client must wait a bounded time (``socket_timeout``), or a Redis that
    stopped answering would hold every request rather than answer 503.
    Any Redis error (refused, timed out, read-only replica, out of memory)
    is :class:`~flask_hooks.StoreUnavailable`, so the sender gets a 503 and retries.

    A server that may evict keys (module docstring) is refused the same
    way, with an ERROR log naming the fix, unless ``allow_eviction``; so is
    a replica, whatever ``allow_eviction`` says. The policy and the role
    come from ``INFO memory`` and ``INFO replication`` (``CONFIG GET`` is
    often disabled on managed Redis), one round trip read before the first
    operation and again after any Redis error, ``close()``, or
    (re)connection of a client built from a URL; an operation that
    reconnected is refused before it returns. A ready client's connections
    are not ours to hook: it is rechecked after errors and ``close`` only.
    A policy or role changed at runtime is seen at the next reconnect;
    while refused, every operation reads them again, so a fixed server is
    accepted at once. Where ``INFO`` is denied, ``allow_eviction`` accepts
    the server unchecked.
    """

    def __init__(
        self,
        client_or_url: Redis | str,
        *,
        key_prefix: str = "hooks:",
        log_size: int = 1000,
        allow_eviction: bool = False,
    ) -> None:
        super().__init__(client_or_url, allow_eviction=allow_eviction)
        #: How far a live lease may lie past ``now + lease``: the clocks' drift, and the
        #: delay of a script redis-py sends again after a timeout with the same ``now``
        #: (a re-sent claim must not take a claim made meanwhile for a stale one).
        self.skew = CLOCK_SKEW + resend_delay(self.client)
        self.key_prefix = key_prefix
        self.log_size = log_size
        self._kept = 0  # kept deliveries claimed, for _sweep
        register = self.client.register_script
        self._claim, self._mark, self._renew = map(register, (lua.CLAIM, lua.MARK, lua.RENEW))
        self._complete, self._release, self._log = map(register, (lua.COMPLETE, lua.RELEASE, lua.LOG))
        self._reopen, self._forget, self._purge, self._trim = map(
            register, (lua.REOPEN, lua.FORGET, lua.PURGE, lua.TRIM)
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        """Open ``redis://``, ``rediss://`` or ``unix://``; ``key_prefix`` and ``allow_eviction`` are ours."""
        from urllib.parse import parse_qsl, urlencode, urlsplit

        try:
            parts = urlsplit(url)
        except ValueError:  # an unclosed "[" of an IPv6 host
            raise ConfigError(f"{masked_url(url)!r}: {NOT_A_URL}") from None
        query = dict(parse_qsl(parts.query))
        if "key_prefix" in query:
            kwargs.setdefault("key_prefix", query.pop("key_prefix"))
        if "allow_eviction" in query:
            flag = query.pop("allow_eviction").lower()
            if flag not in {"true", "false", "1", "0"}:
                raise ConfigError(f"{masked_url(url)!r}: write ?allow_eviction=true or false")
            kwargs.setdefault("allow_eviction", flag in {"true", "1"})
        rest = urlencode(query)  # urlunsplit would drop the "//" of unix:///path, whose netloc is empty
        redis_url = f"{parts.scheme}://{parts.netloc}{parts.path}{'?' if rest else ''}{rest}"
        check_url(redis_url, given=url)
        return cls(redis_url, **kwargs)

    def __repr__(self) -> str:
        return f"<RedisStore {self.client!r} prefix={self.key_prefix!r}>"

    def _keys(self, ns: str, id: str) -> list[str]:
        """The delivery's record, kept body and attempts."""
        tag = f"{self.key_prefix}{{{ns}}}:"
        return [f"{tag}d:{id}", f"{tag}b:{id}", f"{tag}a:{id}"]

    def _ns_key(self, ns: str, name: str) -> str:
        """The receiver's ``log`` or index ``i``."""
        return f"{self.key_prefix}{{{ns}}}:{name}"

    # The state machine.

    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        token = new_token()
        hold, horizon = max(ttl, lease), now + lease + self.skew  # horizon: see lease_is_live
        args: list[Any] = [repr(now), token, repr(now + lease), repr(now + hold), _ms(hold), repr(horizon)]
        if keep is not None:
            secret = "" if keep.secret_index is None else str(keep.secret_index)
            retained = repr(now + keep.retention)
            args += [id, keep.type, repr(keep.received_at), secret, encode_headers(keep.headers), retained]
            args.append(keep.body)
        out = self._call(self._claim, [*self._keys(ns, id), self._ns_key(ns, "i")], args)
        if keep is not None:
            self._kept += 1
            if self._kept % _SWEEP_EVERY == 0:
                self._sweep(ns, now)
        return _answer(out, token, now)

    def _sweep(self, ns: str, now: float) -> None:
        """Drop the oldest index members whose delivery is gone or past its retention.

        The server's TTLs remove a delivery's keys but not its index member,
        which only a purge or a query reaching it removed: where nobody purged,
        the index grew by a member per delivery for ever, until a ``noeviction``
        Redis was full and answered every delivery 503. Best effort, after the
        claim: what a failure leaves is swept next time.
        """
        try:
            self._purge_oldest(ns, now, "", 2 * _SWEEP_EVERY, budget=2 * _SWEEP_EVERY)
        except StoreUnavailable:
            log.debug("sweeping the Redis inbox index failed; trying again later", exc_info=True)

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        args = [token, handler, encode_reply(reply) or ""]
        _fenced(self._call(self._mark, [self._keys(ns, id)[0]], args), ns, id)

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        _fenced(self._call(self._renew, self._keys(ns, id), [token, repr(now + lease), _ms(lease)]), ns, id)

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
        keys, logged = self._attempt(ns, entry)
        args = [token, encode_reply(reply) or "", outcome, repr(now + ttl), _ms(ttl), repr(now), *logged]
        _fenced(self._call(self._complete, [*self._keys(ns, id), *keys], [*args, new_token()]), ns, id)

    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        keys, logged = self._attempt(ns, entry)
        self._call(self._release, [self._keys(ns, id)[0], *keys], [token, *logged, new_token()])

    # The delivery log.

    def _attempt(self, ns: str, entry: LogEntry | None) -> tuple[list[str], list[Any]]:
        """Keys and arguments for a script to log ``entry`` (None: nothing), kept ones' attempts too."""
        id = None if entry is None else entry.id
        record, _, attempts = self._keys(ns, id or "")
        line, kept_too = ("" if entry is None else entry.to_json()), ("" if id is None else "1")
        return [self._ns_key(ns, "log"), record, attempts], [line, self.log_size, MAX_ATTEMPTS, kept_too]

    def log(self, ns: str, entry: LogEntry) -> None:
        self._call(self._log, *self._attempt(ns, entry))

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        stop = self.log_size - 1 if status is not None else min(limit, self.log_size) - 1
        if stop < 0:
            return []
        with self._guard():
            raw = self.client.lrange(self._ns_key(ns, "log"), 0, stop)
        entries = [LogEntry.from_json(line) for line in raw]
        if status is not None:
            entries = [e for e in entries if e.status == status]
        return entries[:limit]

    # The inbox.

    def get(self, ns: str, id: str) -> Stored | None:
        return self._fetch(ns, [id], full=True)[0]

    def _fetch(self, ns: str, ids: list[str], *, full: bool) -> list[Stored | None]:
        """The kept deliveries ``ids`` (None where nothing is kept), in one round trip.

        Without ``full``, only the fields a filter reads (no body, headers, replies
        or attempts): a rare filter reads every record of a long index, and the
        whole records cost six times as much to parse. Replies are read
        undecoded, so a ``decode_responses`` client gets the exact body.
        """
        with self._guard():
            pipe: Any = self.client.pipeline(transaction=False)
            for id in ids:
                record, body, attempts = self._keys(ns, id)
                if full:
                    pipe.execute_command("HGETALL", record, NEVER_DECODE=True)
                    pipe.execute_command("GET", body, NEVER_DECODE=True)
                    pipe.execute_command("LRANGE", attempts, 0, -1, NEVER_DECODE=True)
                else:
                    pipe.execute_command("HMGET", record, *_FILTERED, NEVER_DECODE=True)
            out = pipe.execute()
        if full:
            rows = [out[n : n + 3] for n in range(0, len(out), 3)]
        else:
            rows = [[_present(values), b"", []] for values in out]
        return [_stored(id, *row) for id, row in zip(ids, rows, strict=True)]

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
        """Pages of the index (``ZREVRANGEBYSCORE ... LIMIT``), filtered here.

        Equal scores come in descending byte order of the id: the ``(received_at,
        id)`` order. ``status``, ``type`` and ties with ``before`` are checked on
        the records of each page, and pages are read until ``limit`` rows match
        or the index ends: a short answer means there are no more, which the
        CLI's bulk replay and the dashboard rely on (a bound on the members
        examined hid an old failure behind a few thousand newer deliveries).
        A rare filter over a long index thus reads it through, a page of
        records per round trip. Members whose delivery is gone are dropped on
        the way.

        Each page starts at the last one's score, past the members of that score
        already read (one offset into ties, not into the whole index): a member
        another process removes meanwhile (a forget, a purge, another query's
        trim) then moves no unread one before the next page's start, unless it
        shares that score.
        """
        index = self._ns_key(ns, "i")
        hi = "+inf" if until is None else f"({until!r}"
        if before is not None and (until is None or before[0] < until):
            hi = repr(before[0])  # inclusive: ties are decided by id below
        lo = "-inf" if since is None else repr(since)
        found: list[Stored] = []
        seen: set[str] = set()  # a tie kept meanwhile shifts the rest of its score by one
        offset = 0  # the members of score `hi` already read
        while len(found) < limit:
            with self._guard():
                page = self.client.zrevrangebyscore(index, hi, lo, start=offset, num=_PAGE, withscores=True)
            members = [(_text(m), score) for m, score in cast("list[tuple[Any, float]]", page)]
            ids = [id for id, score in members if (before is None or (score, id) < before) and id not in seen]
            seen.update(ids)
            records = dict(zip(ids, self._fetch(ns, ids, full=False), strict=True))
            wanted = [
                id
                for id, rec in records.items()
                if rec
                and rec.kept_at(now)
                and type_matches(type, rec.type)
                and (status is None or rec.status_at(now) == status)
            ]
            while wanted and len(found) < limit:  # one may be gone since its fields were read
                batch, wanted = wanted[: limit - len(found)], wanted[limit - len(found) :]
                found += filter(None, self._fetch(ns, batch, full=True))
            if gone := {id for id, rec in records.items() if rec is None}:
                self._call(self._trim, [index, *(self._keys(ns, id)[0] for id in gone)], list(gone))
            if len(page) < _PAGE:
                break
            last = members[-1][1]
            ties = sum(1 for id, score in members if score == last and id not in gone)  # gone: trimmed
            offset, hi = ties + (offset if hi == repr(last) else 0), repr(last)
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
        token = new_token()
        stamps = [repr(now), token, repr(now + lease), repr(now + lease + self.skew), _ms(lease)]
        args = [*stamps, len(rerun), *rerun, *keep]
        out = self._call(self._reopen, self._keys(ns, id), args)
        if _text(out[0]) == "missing":
            raise LookupError(id)
        return _answer(out, token, now)

    def forget(self, ns: str, id: str, *, now: float, lease: float) -> bool:
        keys = [*self._keys(ns, id), self._ns_key(ns, "i")]
        out = self._call(self._forget, keys, [id, repr(now), repr(now + lease + self.skew)])
        if isinstance(out, list):
            raise InFlight(after=float(_text(out[1])) - now)
        return bool(out)

    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        """Oldest first; one call examines at most ``10 * limit + 1000`` index members.

        "Past retention" is by ``now`` (the server's TTLs expire them on its own
        clock as well). A delivery's keys and index member go in one script;
        members whose record is already gone are dropped, and not counted.
        """
        before = "" if received_before is None else repr(received_before)
        return self._purge_oldest(ns, now, before, limit, budget=10 * limit + 1000)

    def _purge_oldest(self, ns: str, now: float, before: str, limit: int, *, budget: int) -> int:
        """:meth:`purge`, examining at most ``budget`` of the oldest index members."""
        index = self._ns_key(ns, "i")
        removed = examined = offset = 0
        while removed < limit and examined < budget:
            count = min(_PAGE, budget - examined)
            with self._guard():
                ids = [_text(m) for m in self.client.zrange(index, offset, offset + count - 1)]
            if not ids:
                break
            keys = [index, *(key for id in ids for key in self._keys(ns, id))]
            out = self._call(self._purge, keys, [repr(now), before, limit - removed, *ids])
            batch, seen, dropped = (int(n) for n in out)
            removed, examined, offset = removed + batch, examined + seen, offset + seen - dropped
            if seen < count:  # the index ended, or the limit was reached
                break
        return removed
