"""What crosses the queue, and the interface every queue adapter implements.

The web side verifies, claims, hands each deferred handler a :class:`Job`
and acknowledges only once every hand-over succeeded and the delivery is
durably completed. A job carries everything the worker needs to rebuild
the exact :class:`~flask_hooks.Event` (the body as base64) plus the
handler's name, as plain JSON, so any queue serializer can carry it.

This module imports neither Flask nor a queue library: the pipeline uses
it, and the adapters import Celery or RQ only when they are used.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from ..core.deferral import hand_over as hand_over
from ..core.deferral import handler_key as handler_key
from ..core.deferral import handler_namespace as handler_namespace
from ..core.durations import MAX_SECONDS, is_seconds, shown
from ..core.errors import ConfigError, HookError, InFlight
from ..core.event import Event, Headers, header_pairs

log = logging.getLogger("flask_hooks")

#: The Celery task name and the version of the job format: 2 for a job that re-runs a
#: handler (``Job.rerun``), which a worker of version 1 would take for a duplicate of the
#: handler's first job and skip; it refuses version 2 loudly instead. Other jobs stay 1.
TASK_NAME = "flask_hooks.run_deferred"
JOB_VERSION = 1
RERUN_JOB_VERSION = 2


class HandlerFailed(HookError):
    """Raised by a worker in place of a deferred handler's exception that quoted one of
    the delivery's credentials: the queue logs what it is given, blanked."""

    reason = "handler failed"


class Held(InFlight):
    """Another worker holds the job's handler: the job waits for that lease to end
    without spending a retry (a handler's own ``InFlight`` is a failure like any)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One handler to run for one verified delivery, on a worker."""

    handler: str
    event: Event
    #: ``"pkg.module:create_app"``: how a worker without an app context gets the app.
    app: str | None = None
    #: Seconds the worker's per-handler claim lasts; None: the receiver's ``lease``.
    lease: float | None = None
    max_retries: int = 10
    retry_delay: float = 5.0
    #: A replay's token when an operator re-runs this handler: the worker's record of
    #: it is then a new one (see :func:`handler_key`), so it runs once more, once.
    rerun: str = ""
    #: The receiver's store namespace (app and receiver), so a worker of another app
    #: refuses the job instead of checking it against its own records; "" in old jobs.
    ns: str = ""

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "v": RERUN_JOB_VERSION if self.rerun else JOB_VERSION,
            "handler": self.handler,
            "receiver": e.receiver,
            "id": e.id,
            "type": e.type,
            "payload": e.payload,
            "body": base64.b64encode(e.body).decode("ascii"),
            "headers": header_pairs(e.headers),
            "provider": e.provider,
            "timestamp": e.timestamp,
            "received_at": e.received_at,
            "attempt": e.attempt,
            "secret_index": e.secret_index,
            "app": self.app,
            "lease": self.lease,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "replayed": e.replayed,
            "rerun": self.rerun,
            "ns": self.ns,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        version = data.get("v")
        if type(version) is not int or version not in (JOB_VERSION, RERUN_JOB_VERSION):
            raise HookError(f"unknown deferred job format {version!r}")
        event = Event(
            id=str(data["id"]),
            type=str(data["type"]),
            payload=data["payload"],
            body=base64.b64decode(data["body"]),
            headers=Headers([(str(k), str(v)) for k, v in data["headers"]]),
            provider=str(data["provider"]),
            receiver=str(data["receiver"]),
            timestamp=data["timestamp"],
            received_at=float(data["received_at"]),
            attempt=data["attempt"],
            secret_index=int(data["secret_index"]),
            replayed=bool(data.get("replayed", False)),
        )
        return cls(
            handler=str(data["handler"]),
            event=event,
            app=data.get("app"),
            lease=data.get("lease"),
            max_retries=int(data.get("max_retries", 10)),
            retry_delay=float(data.get("retry_delay", 5.0)),
            rerun=str(data.get("rerun") or ""),
            ns=str(data.get("ns") or ""),
        )

    def backoff(self, retries: int) -> float:
        """Seconds before retry number ``retries + 1``: doubling, capped at 10 minutes."""
        return float(min(self.retry_delay * 2 ** max(retries, 0), 600.0))


class Deferral(ABC):
    """A task queue that ``@hooks.on(..., defer=...)`` hands handlers to.

    ``app`` is the import path of the Flask app or factory for workers
    that run outside an app context; ``lease`` bounds how long one worker
    may hold a handler before a redelivery may run it again (default: the
    receiver's ``lease``, so keep it above the handler's longest run).
    """

    def __init__(
        self,
        *,
        app: str | None = None,
        lease: float | None = None,
        max_retries: int = 10,
        retry_delay: float = 5.0,
    ) -> None:
        if app is not None and not (isinstance(app, str) and ":" in app):
            # A worker process imports it: the app object or factory cannot travel there.
            what = repr(app) if isinstance(app, str) else f"the {type(app).__name__} itself"
            raise ConfigError(
                "app= is an import path naming the app or its factory, like"
                f" 'pkg.module:create_app', not {what}"
            )
        # Checked here, not by the first enqueue: there a bad one would be a 503 for every delivery.
        if not (is_seconds(max_retries, integer=True) and max_retries >= 0):
            raise ConfigError(f"max_retries must be a whole number, 0 or more, not {shown(max_retries)}")
        if not (is_seconds(retry_delay) and retry_delay >= 0):
            raise ConfigError(
                f"retry_delay must be a finite number of seconds >= 0, not {shown(retry_delay)}"
            )
        if lease is not None and not (is_seconds(lease) and 0 < lease <= MAX_SECONDS):
            raise ConfigError(f"lease must be a positive, finite number of seconds, not {shown(lease)}")
        self.app = app
        self.lease = lease
        self.max_retries = max_retries
        self.retry_delay = retry_delay

    def job(self, handler: str, event: Event, *, rerun: str = "", ns: str = "") -> Job:
        return Job(handler, event, self.app, self.lease, self.max_retries, self.retry_delay, rerun, ns)

    @abstractmethod
    def enqueue(self, job: Job) -> None:
        """Hand the job to the broker; return only once the broker has it."""


def checked_timeout(publish_timeout: float) -> float:
    """A queue's ``publish_timeout``: positive and finite, as it bounds every socket wait."""
    if not 0 < publish_timeout < math.inf:
        raise ConfigError(f"publish_timeout must be a positive number of seconds, not {publish_timeout}")
    return publish_timeout
