"""``redis://host:port/db``: the store for receivers on many machines.

Every transition is one Lua script, so it is atomic on the server. Times
come from the receiver's clock (``now``) and are stored in the record as
the lease and expiry deadlines; Redis's own clock only drives ``PEXPIRE``,
which removes a record once nobody can need it. Deadlines are computed in
Python and passed as strings so Lua's number formatting never rounds them.

A record is a hash ``<prefix>{<ns>}:d:<id>`` with ``state``, ``token``,
``lease_until``, ``expires_at``, ``reply``, ``outcome`` and one
``h:<handler>`` field per handler that succeeded. The log is a list
``<prefix>{<ns>}:log``, newest first. The ``{ns}`` hash tag keeps a
receiver's keys in one cluster slot, as ``complete`` touches two of them.

Redis may also delete keys on its own: with ``maxmemory`` set, every
``maxmemory-policy`` but ``noeviction`` evicts keys when memory runs out,
and the ``volatile-*`` ones pick exactly keys with a TTL, which all of ours
have (https://redis.io/docs/latest/develop/reference/eviction/). An evicted
record is a delivery forgotten: its resend runs the handlers again. So the
store refuses such a server unless told ``allow_eviction``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError, LeaseLost, StoreUnavailable
from .base import CLOCK_SKEW, Claim, DedupeStore, LogEntry, Reply, decode_reply, encode_reply, new_token

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("flask_hooks")

# A lease is live while now < lease_until <= now + lease + CLOCK_SKEW (base.lease_is_live):
# ARGV[6] is that upper bound, so a lease written by a clock running ahead is taken over.
_CLAIM = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'expires_at', 'reply', 'outcome')
local now = tonumber(ARGV[1])
if rec[1] and tonumber(rec[3]) > now then
  if rec[1] == 'done' then
    return {'done', rec[4] or '', rec[5] or ''}
  end
  local lease_until = tonumber(rec[2])
  if rec[1] == 'inflight' and lease_until > now and lease_until <= tonumber(ARGV[6]) then
    return {'inflight', rec[2]}
  end
else
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'state', 'inflight', 'token', ARGV[2], 'lease_until', ARGV[3],
           'expires_at', ARGV[4], 'reply', '', 'outcome', '')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local out = {'new'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'h:' then
    out[#out + 1] = string.sub(all[i], 3)
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

_MARK = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'h:' .. ARGV[2], ARGV[3])
return 1
"""

# The record must outlive the new lease, by our deadline and by the server's TTL.
_RENEW = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token', 'expires_at')
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
if tonumber(rec[3]) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

_COMPLETE = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'token', '', 'reply', ARGV[2], 'outcome', ARGV[3],
           'expires_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[6])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
end
return 1
"""

_RELEASE = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] ~= 'inflight' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'free', 'token', '', 'lease_until', '0')
return 1
"""

_LOG = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
"""


def _text(value: Any) -> str:
    """Replies come back as bytes, or as str from a ``decode_responses`` client."""
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _eviction_risk(info: Mapping[str, Any]) -> str:
    """Why a server with this ``INFO memory`` may evict keys, or ``""`` when it cannot.

    ``maxmemory 0`` means no limit, so nothing is evicted; otherwise only
    ``noeviction`` is safe. A missing field counts as a risk: fail closed.
    """
    policy = str(info.get("maxmemory_policy", ""))
    if policy == "noeviction" or str(info.get("maxmemory")) == "0":
        return ""
    return f"maxmemory-policy is {policy or 'unknown'} with maxmemory {info.get('maxmemory')}"


class _Epoch:
    """Changes whenever the eviction policy must be read again; also the ``redis_connect_func``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, connection: Any) -> None:
        connection.on_connect()  # the handshake redis-py runs when no redis_connect_func is set
        self.value += 1


class RedisStore(DedupeStore):
    """A store in Redis; ``client_or_url`` is a ``redis.Redis`` or a URL.

    ``key_prefix`` separates several applications sharing one database.
    Any Redis error (refused, timed out, read-only replica, out of memory)
    is :class:`StoreUnavailable`, so the sender gets a 503 and retries.

    A server that may evict keys (module docstring) is refused the same
    way, with an ERROR log naming the fix, unless ``allow_eviction``. The
    policy comes from ``INFO memory`` (``CONFIG GET`` is often disabled on
    managed Redis), read before the first operation and again after any
    Redis error, :meth:`close`, or (re)connection of a client built from a
    URL; an operation that reconnected is refused before it returns. A
    ready client's connections are not ours to hook: it is rechecked after
    errors and ``close`` only. A policy changed at runtime is seen at the
    next reconnect; while refused, every operation reads it again, so a
    fixed policy is accepted at once.
    """

    def __init__(
        self,
        client_or_url: Redis | str,
        *,
        key_prefix: str = "hooks:",
        log_size: int = 1000,
        allow_eviction: bool = False,
    ) -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._response_error = redis.ResponseError
        self.allow_eviction = allow_eviction
        self._epoch = _Epoch()
        self._checked = -1  # the epoch whose policy was accepted
        self._refused = False
        if isinstance(client_or_url, str):
            client_or_url = self._client(client_or_url)
        self.client = client_or_url
        self.key_prefix = key_prefix
        self.log_size = log_size
        self._claim = self.client.register_script(_CLAIM)
        self._mark = self.client.register_script(_MARK)
        self._renew = self.client.register_script(_RENEW)
        self._complete = self.client.register_script(_COMPLETE)
        self._release = self.client.register_script(_RELEASE)
        self._log = self.client.register_script(_LOG)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        """Open ``redis://``, ``rediss://`` or ``unix://``; ``key_prefix`` and ``allow_eviction`` are ours."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if "key_prefix" in query:
            kwargs.setdefault("key_prefix", query.pop("key_prefix"))
        if "allow_eviction" in query:
            flag = query.pop("allow_eviction").lower()
            if flag not in {"true", "false", "1", "0"}:
                raise ConfigError(f"{url!r}: write ?allow_eviction=true or false")
            kwargs.setdefault("allow_eviction", flag in {"true", "1"})
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(url, **kwargs)

    def _client(self, url: str) -> Redis:
        """Short timeouts and one quick retry: a dead server must become a 503 fast.

        The retry also reconnects a pooled connection that went stale when the
        server restarted; ``redis_connect_func`` notes every (re)connection, so
        the eviction policy is read again. URL options win over these defaults.
        """
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        return redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            redis_connect_func=self._epoch,
        )

    def __repr__(self) -> str:
        return f"<RedisStore {self.client!r} prefix={self.key_prefix!r}>"

    def _key(self, ns: str, id: str) -> str:
        return f"{self.key_prefix}{{{ns}}}:d:{id}"

    def _log_key(self, ns: str) -> str:
        return f"{self.key_prefix}{{{ns}}}:log"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            if self._checked != self._epoch.value and not self.allow_eviction:
                self._check_eviction()
            yield
            if self._checked != self._epoch.value and not self.allow_eviction:  # it reconnected
                self._check_eviction()
        except self._errors as exc:
            self._epoch.value += 1  # the next connection may reach another server
            raise StoreUnavailable() from exc

    def _check_eviction(self) -> None:
        try:
            risk = _eviction_risk(self.client.info("memory"))
        except self._response_error as exc:  # INFO renamed away, or denied by an ACL
            risk = f"INFO memory failed ({exc}), so the eviction policy is unknown"
        if not risk:
            self._refused = False
            self._checked = self._epoch.value  # a connection made for INFO is covered by its answer
            return
        if not self._refused:
            self._refused = True
            log.error(
                "Redis store refused: %s, so Redis may evict acknowledged deliveries and their "
                "resends would run handlers again. Set maxmemory-policy noeviction (redis.conf, or "
                "CONFIG SET maxmemory-policy noeviction), or add ?allow_eviction=true to the store "
                "URL to accept the risk. (%s)",
                risk,
                self._where(),
            )
        raise StoreUnavailable()

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}")

    def _call(self, script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        with self._guard():
            return script(keys=keys, args=args)

    # The state machine.

    def claim(self, ns: str, id: str, *, now: float, lease: float, ttl: float) -> Claim:
        token = new_token()
        keep, horizon = max(ttl, lease), now + lease + CLOCK_SKEW  # horizon: see lease_is_live
        out = self._call(
            self._claim,
            [self._key(ns, id)],
            [repr(now), token, repr(now + lease), repr(now + keep), _ms(keep), repr(horizon)],
        )
        state = _text(out[0])
        if state == "done":
            return Claim("done", reply=decode_reply(_text(out[1])), outcome=_text(out[2]))
        if state == "inflight":
            return Claim("inflight", retry_after=float(_text(out[1])) - now)
        handlers = {_text(out[i]): decode_reply(_text(out[i + 1])) for i in range(1, len(out) - 1, 2)}
        return Claim("new", token=token, handlers=handlers)

    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        args = [token, handler, encode_reply(reply) or ""]
        if not self._call(self._mark, [self._key(ns, id)], args):
            raise LeaseLost()

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        if not self._call(self._renew, [self._key(ns, id)], [token, repr(now + lease), _ms(lease)]):
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
        args = [
            token,
            encode_reply(reply) or "",
            outcome,
            repr(now + ttl),
            _ms(ttl),
            entry.to_json() if entry is not None else "",
            self.log_size,
        ]
        if not self._call(self._complete, [self._key(ns, id), self._log_key(ns)], args):
            raise LeaseLost()

    def release(self, ns: str, id: str, token: str, *, now: float) -> None:
        self._call(self._release, [self._key(ns, id)], [token])

    # The delivery log.

    def log(self, ns: str, entry: LogEntry) -> None:
        self._call(self._log, [self._log_key(ns)], [entry.to_json(), self.log_size])

    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        stop = self.log_size - 1 if status is not None else min(limit, self.log_size) - 1
        if stop < 0:
            return []
        with self._guard():
            raw = self.client.lrange(self._log_key(ns), 0, stop)
        entries = [LogEntry.from_json(line) for line in raw]
        if status is not None:
            entries = [e for e in entries if e.status == status]
        return entries[:limit]

    def close(self) -> None:
        """Disconnect the pool; the next command reconnects (and reads the policy again)."""
        self._epoch.value += 1
        try:
            self.client.connection_pool.disconnect()
        except self._errors as exc:
            raise StoreUnavailable() from exc
