"""Refusing a Redis broker that may evict what it is given.

Under ``maxmemory`` with an evicting ``maxmemory-policy`` (``allkeys-lru``,
common on a Redis shared with a cache), Redis may drop a queue's list or a
job's hash: the delivery was acknowledged once the job was enqueued, and
its handler never runs. The store refuses such a server for its records;
a queue refuses it for its jobs, with the same ERROR log, unless told
``allow_eviction=True``. A server that accepted is asked again only by a
new client or connection.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from ..core.errors import QueueUnavailable
from ..stores._redis_checks import eviction_risk

log = logging.getLogger("flask_hooks")

#: Clients (or kombu connections) whose server keeps what it is given.
_accepted: weakref.WeakSet[Any] = weakref.WeakSet()
#: The risk last logged for each refused owner: one ERROR, not one per delivery.
_refused: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def check_broker(owner: Any, client: Any, *, where: str) -> None:
    """Raise :class:`QueueUnavailable` (a 503) while ``client``'s server may evict keys.

    ``owner`` is what the answer is remembered by (the client, or the pooled connection
    it belongs to). A server that refuses ``INFO`` (an ACL, a managed Redis) cannot be
    told and is trusted, as the broker client's own libraries do.
    """
    if owner in _accepted:
        return
    import redis

    try:
        risk = eviction_risk(client.info("memory"))
    except redis.ResponseError:
        risk = ""
    if risk:
        if _refused.get(owner) != risk:
            _refused[owner] = risk
            log.error(
                "Redis broker refused (%s): %s. It may evict queued jobs of acknowledged deliveries,"
                " whose handlers would never run. Set maxmemory-policy noeviction on it (CONFIG SET"
                " maxmemory-policy noeviction), or pass allow_eviction=True to the queue to accept the risk.",
                where,
                risk,
            )
        raise QueueUnavailable()
    _refused.pop(owner, None)
    _accepted.add(owner)
