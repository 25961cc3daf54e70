"""What the Redis store checks before it trusts a URL or a server.

A URL redis-py cannot use is a :class:`ConfigError` at ``init_app``, with
the URL shown masked, rather than an error on every delivery. A server is
trusted only if it keeps what it is written: a master (a replica drops it
when it resyncs) whose ``maxmemory-policy`` evicts nothing, unless the URL
accepts eviction.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from typing import Any

from ..core.errors import ConfigError
from .url import NOT_A_URL, masked_url


def eviction_risk(info: Mapping[str, Any]) -> str:
    """Why a server with this ``INFO memory`` may evict keys, or ``""`` when it cannot.

    ``maxmemory 0`` means no limit, so nothing is evicted; otherwise only
    ``noeviction`` is safe. A missing field counts as a risk: fail closed.
    """
    policy = str(info.get("maxmemory_policy", ""))
    if policy == "noeviction" or str(info.get("maxmemory")) == "0":
        return ""
    return f"maxmemory-policy is {policy or 'unknown'} with maxmemory {info.get('maxmemory')}"


def check_url(url: str, *, given: str) -> None:
    """A :class:`ConfigError` at ``init_app`` for a URL redis-py cannot use, not an error per delivery.

    ``url`` is what redis-py gets; ``given`` is the URL as written, shown masked.
    """
    import redis

    shown = masked_url(given)
    if problem := url_problem(url):
        hint = "; percent-encode a password's / ? # and @" if "@" in given else ""
        raise ConfigError(f"{shown!r}: {problem}{hint}")
    try:
        pool = redis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)  # checks the options; connects nowhere
    except (ValueError, TypeError, redis.RedisError) as exc:
        reason = str(exc)
        if any(word in given and word not in shown for word in re.findall(r"[^\s'\",:]+", reason)):
            reason = "options redis-py cannot use"  # the message quotes what the mask hides
        raise ConfigError(f"{shown!r}: {reason}") from None
    if problem := encoding_problem(pool.connection_kwargs):
        raise ConfigError(f"{shown!r}: {problem}; remove encoding= from the URL")
    for name in ("socket_timeout", "socket_connect_timeout"):  # unset: the store's defaults
        if problem := wait_problem(name, pool.connection_kwargs.get(name), required=False):
            raise ConfigError(f"{shown!r}: {problem}")


def wait_problem(name: str, wait: Any, *, required: bool) -> str:
    """Why a connection's timeout ``name`` of ``wait`` seconds fails or hangs, or ``""``.

    The socket module refuses a negative or infinite one at every connection (a
    ValueError or an OverflowError, a 500); 0 never waits. None (``required``)
    waits for as long as a Redis that stopped answering is silent, holding every
    request instead of answering 503.
    """
    if wait is None:
        return f"{name} is not set: a Redis that stops answering would hang every request" if required else ""
    if not 0 < wait < math.inf:
        return f"{name} must be a number of seconds above 0, not {wait!r}"
    return ""


def encoding_problem(options: Mapping[str, Any]) -> str:
    """Why a client with these connection options cannot hold every id, or ``""``.

    Keys, ids and scripts are UTF-8 (what ``text`` reads back): another
    encoding cannot encode some ids (a ``UnicodeEncodeError``, a 500), or
    turns the scripts into what Redis cannot run, or is no codec at all.
    """
    name = str(options.get("encoding", "utf-8"))
    try:
        utf8 = codecs.lookup(name).name == "utf-8"
    except LookupError:
        utf8 = False
    return "" if utf8 else f"the store writes ids as UTF-8, not {name}"


#: Options redis-py takes as Python objects. A URL gives them as text, which fails at each
#: connection (a 500 per delivery) or replaces what the store relies on (``retry``,
#: ``redis_connect_func``, which notes reconnections).
_OBJECT_OPTIONS = frozenset(
    {
        "command_packer",
        "connection_class",
        "credential_provider",
        "driver_info",
        "event_dispatcher",
        "maint_notifications_config",
        "maint_notifications_pool_handler",
        "parser_class",
        "redis_connect_func",
        "retry",
        "socket_keepalive_options",
        "socket_type",
    }
)


def url_problem(url: str) -> str:
    """What redis-py would not notice (no host, a non-number database) or would say with the port's text."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return NOT_A_URL
    if parts.scheme not in {"redis", "rediss", "unix"}:
        return "write redis://host:port/db, rediss://... or unix:///path/to/redis.sock"
    if objects := sorted(_OBJECT_OPTIONS.intersection(name for name, _ in parse_qsl(parts.query))):
        return f"{objects[0]} is a Python object, not text: pass a client, RedisStore(redis.Redis(...))"
    if parts.scheme == "unix":
        return "" if parts.path else "names no socket: write unix:///path/to/redis.sock"
    if not parts.hostname:
        return f"names no host: write {parts.scheme}://host:port/db"
    try:
        port = parts.port  # urllib checks the port as it reads it
    except ValueError:
        port = 0
    if port == 0:  # 0 is no port a server listens on: connections would fail at the first delivery
        return "the port is not a number from 1 to 65535"
    db = unquote(parts.path).replace("/", "")  # as redis-py reads it; it ignores a non-number
    if db and not (db.isascii() and db.isdigit()):
        return "the path is the database number: redis://host:port/0"
    return ""


def replica_risk(info: Mapping[str, Any]) -> str:
    """Why a server with this ``INFO replication`` would drop acknowledged records, or ``""``.

    Only a master keeps them; a missing role counts as a risk: fail closed.
    """
    role = str(info.get("role", ""))
    if role == "master":
        return ""
    if role == "slave":
        return f"the server is a replica of {info.get('master_host')}:{info.get('master_port')}"
    return f"the server's role is {role or 'unknown'}"


def refusal_advice(*, replica: bool) -> str:
    """What the ERROR log of a refused server tells the operator to do."""
    if replica:
        return (
            "A replica drops what it was written when it resyncs from its master, so acknowledged"
            " deliveries would be forgotten and their resends would run handlers again. Point the"
            " store URL at the master."
        )
    return (
        "Redis may evict acknowledged deliveries, and their resends would run handlers again. Set"
        " maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction), or"
        " add ?allow_eviction=true to the store URL to accept the risk."
    )
