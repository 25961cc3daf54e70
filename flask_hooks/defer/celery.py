"""Defer handlers to Celery (``pip install flask-webhooks[celery]``).

One task, ``flask_hooks.run_deferred``, is registered as a shared task, so
it exists on the user's Celery app in the web process and in the worker
(``celery -A module worker``) alike. It runs inside the app context that
Flask's ``celery_init_app`` pattern gives every task, or, without one, in
the app named by ``CeleryQueue(app="pkg.module:create_app")``.

``celery`` is imported only when a queue is created.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..core.errors import ConfigError, HookError, StoreUnavailable
from ._eviction import check_broker
from .base import TASK_NAME, Deferral, Held, Job, checked_timeout

_registered = False
_register_lock = threading.Lock()


class CeleryQueue(Deferral):
    """``@hooks.on("x", defer=CeleryQueue(celery_app))``.

    Without ``celery_app``, the Celery app in ``current_app.extensions["celery"]``
    (where Flask's pattern puts it) is used at enqueue time, so handlers can
    be declared before any app exists. ``queue`` routes the task; publishing
    is retried ``publish_retries`` times (within about a second) before the
    delivery is answered 503. No socket operation of a publish, nor its wait
    for one of the pool's connections, waits more than ``publish_timeout``
    seconds, so a broker that stops answering
    (frozen, partitioned) costs the sender a 503 after about
    ``publish_retries + 2`` of them (8 s by default), not a request that
    hangs while its claim is renewed; the broker's own
    ``broker_transport_options`` (``socket_timeout``) win when set. A Redis
    broker that may evict keys is refused (a 503) unless ``allow_eviction=True``.
    """

    def __init__(
        self,
        celery_app: Any = None,
        *,
        queue: str | None = None,
        publish_retries: int = 2,
        publish_timeout: float = 2.0,
        allow_eviction: bool = False,
        app: str | None = None,
        lease: float | None = None,
        max_retries: int = 10,
        retry_delay: float = 5.0,
    ) -> None:
        super().__init__(app=app, lease=lease, max_retries=max_retries, retry_delay=retry_delay)
        self.celery_app = celery_app
        self.queue = queue
        self.publish_retries = publish_retries
        self.publish_timeout = checked_timeout(publish_timeout)
        self.allow_eviction = allow_eviction
        self._pools: dict[tuple[Any, int], Any] = {}
        self._pools_lock = threading.Lock()
        register_task()

    def enqueue(self, job: Job) -> None:
        celery_app = self.celery_app or _celery_of_current_app()
        # A pool whose connections are all taken (broker_pool_limit threads publishing to a
        # frozen broker) is waited for as long as a socket, then it is a 503 like one.
        with self._pool(celery_app).acquire(block=True, timeout=self.publish_timeout) as connection:
            if not self.allow_eviction and connection.transport.driver_type == "redis":
                check_broker(connection, connection.default_channel.client, where="Celery broker")
            celery_app.send_task(
                TASK_NAME,
                args=(job.to_json(),),
                queue=self.queue,
                connection=connection,
                timeout=self.publish_timeout,
                confirm_timeout=self.publish_timeout,
                ignore_result=True,  # no result backend call (it waited ~20 s for a dead one)
                retry=self.publish_retries > 0,
                retry_policy={
                    "max_retries": self.publish_retries,
                    "interval_start": 0,
                    "interval_step": 0.2,
                    "interval_max": 0.5,
                },
            )

    def _pool(self, celery_app: Any) -> Any:
        """Broker connections with socket timeouts, per Celery app and process (a pool
        made before a fork is not used after it); Celery's own pool has none."""
        key = (celery_app, os.getpid())
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                conf, timeout = celery_app.conf, self.publish_timeout
                bounded = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
                connection = celery_app.connection_for_write(
                    transport_options={**bounded, **(conf.broker_transport_options or {})}
                )
                pool = self._pools[key] = connection.Pool(limit=conf.broker_pool_limit)
            return pool

    def __repr__(self) -> str:
        return f"<CeleryQueue {self.queue or 'default'}>"


def _celery_of_current_app() -> Any:
    from flask import current_app

    celery_app = current_app.extensions.get("celery")
    if celery_app is None:
        raise ConfigError(
            "CeleryQueue() without a Celery app needs app.extensions['celery']"
            " (Flask's celery_init_app pattern); or pass CeleryQueue(celery_app)"
        )
    return celery_app


def register_task() -> None:
    """Register ``flask_hooks.run_deferred`` on every Celery app, once per process."""
    global _registered
    with _register_lock:
        if _registered:
            return
        try:
            from celery import shared_task
        except ImportError:
            raise ConfigError("CeleryQueue needs Celery: pip install 'flask-webhooks[celery]'") from None

        shared_task(
            name=TASK_NAME,
            bind=True,
            # Ack after the run: a worker killed mid-handler gets the job redelivered,
            # and the per-handler record makes that redelivery safe.
            acks_late=True,
            reject_on_worker_lost=True,
            # Its result ("handled") is read by nobody: a result backend that is down must
            # stall neither the worker nor, through send_task, the delivery's request.
            ignore_result=True,
        )(run_deferred)
        _registered = True


def run_deferred(task: Any, data: dict[str, Any]) -> str:
    """The Celery task: run the handler once; on failure, let Celery retry it.

    Waiting for another worker's claim (``InFlight``: a redelivery while the
    first run still holds it, or its worker died) is no failure: it retries
    after that lease without spending one of ``max_retries``, which count the
    handler's failures only (``waited`` in the job counts the waits).
    """
    from .worker import run

    retries = int(task.request.retries or 0)
    try:
        job = Job.from_json(data)
    except HookError as exc:
        # A format of a newer release, whose web side was deployed before this worker: retried,
        # as a handler this worker does not know yet is, so that a worker of that release runs it.
        limit = data.get("max_retries")
        limit = limit if type(limit) is int and limit >= 0 else Job.max_retries
        raise task.retry(exc=exc, countdown=min(5.0 * 2**retries, 600.0), max_retries=limit) from exc
    waited = int(data.get("waited") or 0)
    try:
        return run(job, final=retries - waited >= job.max_retries)
    except Held as exc:
        after = exc.after if exc.after is not None else job.backoff(0)
        again = dict(data, waited=waited + 1)
        raise task.retry(args=(again,), countdown=after, max_retries=retries + 1) from exc
    except Exception as exc:
        # Configuration errors are retried too: during a rolling deploy a worker
        # may not know a new handler yet; max_retries bounds it.
        failed = retries - waited
        after = exc.after if isinstance(exc, HookError) and exc.after is not None else job.backoff(failed)
        if isinstance(exc, StoreUnavailable):  # an outage backs off: 5 s each would spend them in a minute
            after = max(after, job.backoff(failed))
        raise task.retry(exc=exc, countdown=after, max_retries=job.max_retries + waited) from exc
