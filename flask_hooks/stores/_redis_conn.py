"""The Redis store's client, and the checks that must pass before it is trusted.

The base of :class:`~flask_hooks.stores.redis.RedisStore`: every command
runs in :meth:`Connections._guard`, which turns a Redis error into
:class:`StoreUnavailable` (a 503) and reads the server's eviction policy
and role again whenever they may have changed (before the first command,
after an error, :meth:`Connections.close` or a reconnection of a client
built from a URL). What makes a policy or a role a risk is decided in
``_redis_checks``; the scripts the commands run are in ``_redis_scripts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError, StoreUnavailable
from ._redis_checks import (
    check_url,
    encoding_problem,
    eviction_risk,
    refusal_advice,
    replica_risk,
    wait_problem,
)

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("flask_hooks")


def connection_of(client: Redis) -> Any:
    """A connection as ``client``'s pool makes them, not connected: how long it waits and how
    it retries are there, not always in the pool's kwargs (redis-py's defaults, a class's own)."""
    pool: Any = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


def resend_delay(client: Redis) -> float:
    """The longest a command redis-py retries can reach the server after it was sent.

    Each retry waits out a socket timeout, reconnects and backs off (our client
    retries once). Read from a connection (:func:`connection_of`): a client passed
    in may take redis-py's defaults (redis-py 6+ retries 3 or 10 times). Only
    redis-py's private ``_retries`` and ``_cap`` (``_backoff`` of a constant
    one) say how it retries.
    """
    conn = connection_of(client)
    retry = getattr(conn, "retry", None)
    retries = int(getattr(retry, "_retries", 0))
    backoff = getattr(retry, "_backoff", None)
    pause = getattr(backoff, "_cap", getattr(backoff, "_backoff", 0))
    waits = (getattr(conn, "socket_timeout", None), getattr(conn, "socket_connect_timeout", None), pause)
    return retries * sum(float(wait) for wait in waits if wait) + 0.1


def _check_client(client: Any) -> None:
    """A :class:`ConfigError` for a client passed in that the store cannot use, not an error per delivery.

    An asyncio client's commands return coroutines (a TypeError, a 500, at
    every delivery); a ``RedisCluster`` has no connection pool. Then the
    encoding and the timeouts, as a URL's are checked.
    """
    import redis

    if not isinstance(client, redis.Redis):
        kind = f"{type(client).__module__}.{type(client).__qualname__}"
        raise ConfigError(f"RedisStore(client) takes a redis.Redis, not {kind}")
    if problem := encoding_problem(client.connection_pool.connection_kwargs):
        raise ConfigError(f"RedisStore(client): {problem}; build the client with encoding='utf-8'")
    sample = connection_of(client)
    for name, required in (("socket_timeout", True), ("socket_connect_timeout", False)):
        if problem := wait_problem(name, getattr(sample, name, None), required=required):
            raise ConfigError(f"RedisStore(client): {problem}; build the client with {name}=2")


def _info_refused(exc: Exception) -> bool:
    """Whether ``INFO`` itself was refused: denied by an ACL (``NOPERM``) or renamed away."""
    from redis.exceptions import NoPermissionError

    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc)


class _Epoch:
    """Changes whenever the policy and role must be read again; also the ``redis_connect_func``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, connection: Any) -> None:
        connection.on_connect()  # the handshake redis-py runs when no redis_connect_func is set
        self.value += 1


class Connections:
    """A Redis client, refused while its server may forget what it is written.

    ``client_or_url`` is a ``redis.Redis`` or a URL (a client is built for
    it); ``allow_eviction`` accepts a server that may evict keys.
    """

    def __init__(self, client_or_url: Redis | str, *, allow_eviction: bool) -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._response_error = redis.ResponseError
        self._connection_error = redis.ConnectionError
        self.allow_eviction = allow_eviction
        self._epoch = _Epoch()
        self._checked = -1  # the epoch whose policy and role were accepted
        self._refused = ""  # the reason last logged
        #: Whether the client is the store's own (built from a URL), its pool ours to manage.
        self._own_client = isinstance(client_or_url, str)
        if isinstance(client_or_url, str):
            client_or_url = self._client(client_or_url)
        else:
            _check_client(client_or_url)
        self.client = client_or_url

    def _client(self, url: str) -> Redis:
        """Short timeouts and one quick retry: a dead server must become a 503 fast.

        The retry also reconnects a pooled connection that went stale when the
        server restarted; ``redis_connect_func`` notes every (re)connection, so
        the eviction policy is read again. URL options win over these defaults.
        redis-py before 6 retries only the errors in ``retry_on_error``, whatever
        the ``Retry`` says, so both name them.
        """
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        check_url(url, given=url)
        return redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            redis_connect_func=self._epoch,
        )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            if self._checked != self._epoch.value:
                self._check_server()
            yield
            if self._checked != self._epoch.value:  # it reconnected
                self._check_server()
        except self._errors as exc:
            self._epoch.value += 1  # the next connection may reach another server
            if isinstance(exc, self._connection_error) and self._own_client:
                self._let_idle_go()
            raise StoreUnavailable() from exc

    def _let_idle_go(self) -> None:
        """Disconnect the pool's idle connections after a connection failed.

        redis-py's pool hands out its most recently returned connection first.
        One that failed to connect (``maxclients`` reached in a burst) goes
        back on top of the live ones, so every later command takes it and
        fails again, while the pool's own idle connections hold the slots it
        waits for. Dropped, they free them; they reconnect when next used.
        Only in a pool the store made (a ``ConnectionPool``, which drops them
        under its lock): a client passed in is the app's, and a
        ``BlockingConnectionPool`` drops them outside its lock, where another
        thread may have taken one.
        """
        with suppress(Exception):
            self.client.connection_pool.disconnect(inuse_connections=False)

    def _check_server(self) -> None:
        pipe: Any = self.client.pipeline(transaction=False)
        try:
            memory, replication = pipe.info("memory").info("replication").execute()
        except self._response_error as exc:
            if not _info_refused(exc):  # another error (a database number out of range): no policy advice
                raise
            unknown = f"INFO failed ({exc}): the eviction policy and the role are unknown"
            risk, replica = ("" if self.allow_eviction else unknown), False
        else:
            risk = replica_risk(replication)
            replica = bool(risk)
            if not risk and not self.allow_eviction:
                risk = eviction_risk(memory)
        if not risk:
            self._refused = ""
            self._checked = self._epoch.value  # a connection made for INFO is covered by its answer
            return
        if risk != self._refused:
            self._refused = risk
            advice = refusal_advice(replica=replica)
            log.error("Redis store refused: %s. %s (%s)", risk, advice, self._where())
        raise StoreUnavailable()

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}")

    def _call(self, script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        with self._guard():
            return script(keys=keys, args=args)

    def close(self) -> None:
        """Disconnect the pool; the next command reconnects (and reads the policy and role again)."""
        self._epoch.value += 1
        try:
            self.client.connection_pool.disconnect()
        except self._errors as exc:
            raise StoreUnavailable() from exc
