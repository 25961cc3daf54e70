"""Defer handlers to RQ (``pip install flask-webhooks[rq]``).

Jobs call :func:`perform`, a plain function that RQ workers import by
name; it builds the app from the queue's ``app="pkg.module:create_app"``
(once per worker process) and runs the handler in its app context. RQ's
own ``Retry`` runs a failed handler again; ``rq`` is imported only when a
queue is used.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError
from .base import Deferral, Job

#: What RQ workers import to run a job.
FUNCTION = "flask_hooks.defer.rq.perform"


class RQQueue(Deferral):
    """``@hooks.on("x", defer=RQQueue(app="myapp:create_app"))``.

    ``queue`` is an ``rq.Queue``, a Redis URL, or None for the URL in the
    current app's ``HOOKS_RQ_URL`` (read at enqueue time, so handlers can be
    declared before any app exists); ``name`` is the queue name for the
    last two. Workers have no app context of their own, so ``app`` is
    required. ``retry_delay`` 0 re-enqueues a failed job at once; larger
    delays need a worker started ``--with-scheduler``.
    """

    def __init__(
        self,
        queue: Any = None,
        *,
        app: str,
        name: str = "default",
        job_timeout: int | None = None,
        lease: float | None = None,
        max_retries: int = 10,
        retry_delay: float = 5.0,
    ) -> None:
        if not app:
            raise ConfigError("RQQueue needs app='pkg.module:create_app' so workers can build the app")
        super().__init__(app=app, lease=lease, max_retries=max_retries, retry_delay=retry_delay)
        self.queue = queue
        self.name = name
        self.job_timeout = job_timeout
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

            queue = self._queues[url] = Queue(self.name, connection=redis.Redis.from_url(url))
        return queue

    def enqueue(self, job: Job) -> None:
        from rq import Retry

        delays = [int(job.backoff(n)) for n in range(job.max_retries)]
        self.rq_queue().enqueue_call(
            FUNCTION,
            args=(job.to_json(),),
            timeout=self.job_timeout,
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
    """The RQ job: run the handler once; an exception lets RQ's ``Retry`` run it again."""
    from .worker import perform as run

    return run(data)
