"""Handing a handler to a task queue: the protocol the pipeline knows.

The adapters (:mod:`flask_hooks.defer`) implement it for Celery and RQ;
the pipeline only calls ``job`` and ``enqueue`` and acknowledges once the
broker has the job.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from .errors import HookError, PayloadTooDeep, QueueUnavailable
from .event import Event, Headers, header_pairs
from .inbox import Stored, redact
from .routing import Route
from .store import DedupeStore

log = logging.getLogger("flask_hooks")


class Queue(Protocol):
    """What ``@hooks.on(..., defer=...)`` takes."""

    def job(self, handler: str, event: Event, *, rerun: str = "", ns: str = "") -> Any:
        """The queue's job for one handler of one delivery.

        ``rerun`` (a replay's claim token) makes it a run of its own: the
        worker runs the handler once more though it ran before. ``ns`` is the
        receiver's store namespace, which the worker checks is its own.
        """

    def enqueue(self, job: Any) -> None:
        """Hand the job to the broker; return only once the broker has it."""


def handler_namespace(receiver: str) -> str:
    """Where workers keep one record per (delivery, handler), apart from deliveries."""
    return f"{receiver}/handlers"


def handler_key(delivery_id: str, handler: str, rerun: str = "") -> str:
    """The worker's record of one handler of one delivery; a re-run's is its own."""
    return f"{delivery_id}/{handler}" + (f"#rerun:{rerun}" if rerun else "")


def worker_lease(queue: object, lease: float) -> float:
    """The lease a worker of ``queue`` holds a handler for: the queue's own (``Deferral(lease=...)``)
    when longer than the receiver's ``lease``. A reader of a worker's record must use it: to one
    using a shorter lease, a renewed claim looks stale (a skewed clock), and it takes it over."""
    own = getattr(queue, "lease", None)
    return max(lease, own) if isinstance(own, (int, float)) else lease


def worker_ran(
    store: DedupeStore, ns: str, id: str, route: Route, *, now: float, lease: float, ttl: float
) -> bool:
    """Whether a worker ran deferred ``route`` for delivery ``id`` (or runs it now): its record says.

    A replay naming a deferred handler hands it over as a re-run (a job of its own) only
    then. Otherwise its first job has not run (still queued) or failed, and the replay's
    job is that same run: the worker runs the handler once for both. The delivery's marks
    cannot tell: a mark means "enqueued", and a delivery the queue gave up on has none.
    Asked by claiming the record and letting go of it at once.
    """
    space, key, lease = handler_namespace(ns), handler_key(id, route.name), worker_lease(route.defer, lease)
    claim = store.claim(space, key, now=now, lease=lease, ttl=max(ttl, lease))
    if claim.state != "new":
        return True
    store.release(space, key, claim.token, now=now)
    return False


def run_again(
    store: DedupeStore,
    ns: str,
    stored: Stored,
    routes: Sequence[Route],
    chosen: Collection[str],
    *,
    now: float,
    lease: float,
    ttl: float,
) -> frozenset[str]:
    """The chosen deferred handlers a replay hands over as re-runs, jobs of their own: those an
    attempt and their worker's record say ran. Of the others the replay's job is the first
    job's run; so is one the inbox shows pending whose worker ran it unseen (its completion's
    answer lost): run once for both, its duplicate then says it ran."""
    return frozenset(
        r.name
        for r in routes
        if r.defer is not None
        and r.name in chosen
        and worker_ran(store, ns, stored.id, r, now=now, lease=lease, ttl=ttl)
        and any(r.name in a.handlers for a in stored.attempts)
    )


@functools.lru_cache(maxsize=64)
def _takes_namespace(kind: type[Queue]) -> bool:
    """Whether the queue's ``job`` takes ``ns`` (0.2): a queue written for 0.1 does not,
    and its jobs go without it (a worker then cannot tell another app's jobs)."""
    parameters = inspect.signature(kind.job).parameters.values()
    return any(p.name == "ns" or p.kind is p.VAR_KEYWORD for p in parameters)


def hand_over(
    queue: Queue, handler: str, event: Event, *, ns: str, redacted: Iterable[str] = (), rerun: str = ""
) -> None:
    """Enqueue one deferred handler; any broker failure becomes a 503.

    The job carries the headers with their credentials (``Authorization``,
    ``Cookie``, the provider's ``redacted`` names, names like ``X-Api-Key``) replaced, as the inbox
    keeps them, so a replayed and a deferred handler see the same event: a
    broker and its logs are one more place a sender's token must not be.
    """
    kept = event._replace(headers=Headers(redact(header_pairs(event.headers), redacted)))
    options: dict[str, str] = {"rerun": rerun} if rerun else {}
    if _takes_namespace(type(queue)):
        options["ns"] = ns
    job = queue.job(handler, kept, **options)
    try:
        queue.enqueue(job)
    except HookError:
        raise
    except Exception as exc:
        if _too_deep(exc):  # the client's serializer refused this payload: not the broker
            raise PayloadTooDeep() from exc
        log.warning("could not enqueue %s for %s %s", handler, event.receiver, event.id, exc_info=True)
        raise QueueUnavailable() from exc


def _too_deep(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps (kombu's ``EncodeError`` does), a ``RecursionError``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RecursionError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
