"""Defer handlers to RQ (``pip install flask-webhooks[rq]``).

Jobs call :func:`perform`, a plain function that RQ workers import by
name; it builds the app from the queue's ``app="pkg.module:create_app"``
(once per worker process) and runs the handler in its app context. RQ's
own ``Retry`` runs a failed handler again; ``rq`` is imported only when a
queue is used.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import timedelta
from typing import Any

from ..core.durations import is_seconds, shown
from ..core.errors import ConfigError
from ._eviction import check_broker
from .base import Deferral, Held, Job, checked_timeout

#: What RQ workers import to run a job.
FUNCTION = "flask_hooks.defer.rq.perform"

#: How long RQ keeps a failed job (with the delivery's body and payload): the inbox's default
#: retention, 7 days, not RQ's year.
FAILURE_TTL = 7 * 86400

log = logging.getLogger("flask_hooks")


class RQQueue(Deferral):
    """``@hooks.on("x", defer=RQQueue(app="myapp:create_app"))``.

    ``queue`` is an ``rq.Queue``, a Redis URL, or None for the URL in the
    current app's ``HOOKS_RQ_URL`` (read at enqueue time, so handlers can be
    declared before any app exists); ``name`` is the queue name for the
    last two. Workers have no app context of their own, so ``app`` is
    required. ``retry_delay`` 0 re-enqueues a failed job at once; larger
    delays, and a job that waits for another worker's claim, need a worker
    started ``--with-scheduler``. No socket operation of an enqueue waits
    more than ``publish_timeout`` seconds on the connections made from a
    URL (its own ``?socket_timeout=`` wins), so a frozen Redis costs the
    sender a 503, not a hung request; an ``rq.Queue`` given brings its own.
    A Redis that may evict keys (``maxmemory-policy allkeys-lru``) could drop
    queued jobs of acknowledged deliveries: it is refused (a 503, an ERROR
    log naming the fix) unless ``allow_eviction=True``.
    A job that failed for good keeps the delivery's body and payload in RQ's
    ``FailedJobRegistry`` for ``failure_ttl`` seconds: 7 days, the inbox's
    default retention, where RQ's own default is a year.
    """

    def __init__(
        self,
        queue: Any = None,
        *,
        app: str,
        name: str = "default",
        job_timeout: int | None = None,
        failure_ttl: int = FAILURE_TTL,
        publish_timeout: float = 5.0,
        allow_eviction: bool = False,
        lease: float | None = None,
        max_retries: int = 10,
        retry_delay: float = 5.0,
    ) -> None:
        if not app:
            raise ConfigError("RQQueue needs app='pkg.module:create_app' so workers can build the app")
        if importlib.util.find_spec("rq") is None:
            raise ConfigError("RQQueue needs RQ: pip install 'flask-webhooks[rq]'")
        super().__init__(app=app, lease=lease, max_retries=max_retries, retry_delay=retry_delay)
        self.publish_timeout = checked_timeout(publish_timeout)
        self.queue = queue
        self.name = name
        self.job_timeout = job_timeout
        if not (is_seconds(failure_ttl, integer=True) and failure_ttl > 0):
            raise ConfigError(f"failure_ttl must be whole seconds, more than 0, not {shown(failure_ttl)}")
        self.failure_ttl = failure_ttl
        self.allow_eviction = allow_eviction
        self._queues: dict[str, Any] = {}

    def rq_queue(self) -> Any:
        """The ``rq.Queue`` jobs go to (connections are made once per URL)."""
        if self.queue is not None and not isinstance(self.queue, str):
            return self.queue
        url = self.queue or _url_of_current_app()
        queue = self._queues.get(url)
        if queue is None:
            import redis
            from rq import Queue

            timeout = self.publish_timeout
            connection = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            queue = self._queues[url] = Queue(self.name, connection=connection)
        return queue

    def enqueue(self, job: Job) -> None:
        from rq import Retry

        delays = [int(job.backoff(n)) for n in range(job.max_retries)]
        queue = self.rq_queue()
        if not self.allow_eviction:
            check_broker(queue.connection, queue.connection, where=f"RQ queue {queue.name!r}")
        queue.enqueue_call(
            FUNCTION,
            args=(job.to_json(),),
            timeout=self.job_timeout,
            failure_ttl=self.failure_ttl,
            retry=Retry(max=job.max_retries, interval=delays) if job.max_retries else None,
            description=f"{job.handler} {job.event.receiver}:{job.event.id}",
        )

    def __repr__(self) -> str:
        return f"<RQQueue {self.name}>"


def _url_of_current_app() -> str:
    from flask import current_app

    url = current_app.config.get("HOOKS_RQ_URL")
    if not url:
        raise ConfigError("RQQueue() without a queue needs HOOKS_RQ_URL, e.g. 'redis://localhost:6379/0'")
    return str(url)


def perform(data: dict[str, Any]) -> str:
    """The RQ job: run the handler once; an exception lets RQ's ``Retry`` run it again.

    Waiting for another worker's claim (a job run again while the first run
    still holds it, or after its worker died) is no failure: the job is put
    back for when that lease ends, keeping the retries it has left.
    """
    from rq import get_current_job

    from .worker import perform as run

    current = get_current_job()
    # A job RQ runs inline (Queue(is_async=False), as tests do; its worker is "sync") is
    # never retried: its first run is its last.
    final = current is None or getattr(current, "worker_name", None) == "sync" or not current.retries_left
    try:
        return run(data, final=final)
    except Held as exc:
        if current is None:
            raise
        _again_after(current, exc.after if exc.after is not None else 1.0)
        _check_scheduler(current, "put back to wait for another worker's claim")
        return "in-flight"
    except Exception:
        if current is not None and current.retries_left and any(current.retry_intervals or ()):
            _check_scheduler(current, "retried after a delay")
        raise


def _check_scheduler(current: Any, what: str) -> None:
    """Say so when no worker of the job's queue runs RQ's scheduler: only a worker started
    ``--with-scheduler`` moves a job from the ScheduledJobRegistry back onto its queue,
    and without one the delivery's handler waits there for ever, silently."""
    from rq.scheduler import RQScheduler

    try:
        running = bool(current.connection.exists(RQScheduler.get_locking_key(current.origin)))
    except Exception:  # the job is scheduled already; this is advice, not the outcome
        return
    if not running:
        log.error(
            "RQ job %s (%r) was %s, but no worker of queue %r runs a scheduler: it will not run"
            " until one does (start the workers with `rq worker --with-scheduler`)",
            current.id,
            current.description,
            what,
            current.origin,
        )


def _again_after(current: Any, seconds: float) -> None:
    from rq import Queue, Retry

    left, intervals = current.retries_left, current.retry_intervals
    Queue(current.origin, connection=current.connection).enqueue_in(
        timedelta(seconds=max(seconds, 1.0)),
        FUNCTION,
        args=current.args,
        job_timeout=current.timeout,
        failure_ttl=current.failure_ttl,
        retry=Retry(max=left, interval=intervals or 0) if left else None,
        description=current.description,
    )
