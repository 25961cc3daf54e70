"""The worker side: run one deferred handler once, with the web side's store.

Each (delivery, handler) pair gets its own record in the receiver's store
under :func:`~flask_hooks.defer.base.handler_namespace`: the worker
claims it with a lease, runs the handler, and completes it, so a queue
that delivers the job twice (a redelivery, or a re-enqueue after a lost
acknowledgement) runs the handler once. A failure releases the record
and re-raises, so the queue's own retry runs the handler again.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context

from .. import signals
from ..core.attempts import blanked_traceback, log_entry, log_failure, log_quietly
from ..core.errors import ConfigError, InFlight, LeaseLost, StoreUnavailable
from ..core.replies import refuse_not_done
from ..core.routing import Route
from ..core.scrub import scrub
from ..core.store import Reply
from ..extension import Receiver, get_receiver
from ..handler_reply import call_handler, render
from .base import HandlerFailed, Held, Job, handler_key, handler_namespace, log

#: Seconds between tries to mark a delivery failed while another holds it, doubling up to the max.
_MARK_PAUSE, _MARK_PAUSE_MAX = 0.01, 1.0

_apps: dict[str, Flask] = {}
_apps_lock = threading.Lock()


def load_app(path: str) -> Flask:
    """The app at ``"pkg.module:name"``: a Flask app, or a factory called once per process."""
    with _apps_lock:
        app = _apps.get(path)
        if app is None:
            module_name, _, attr = path.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            app = target if isinstance(target, Flask) else target()
            if not isinstance(app, Flask):
                raise ConfigError(f"{path!r} did not give a Flask app")
            _apps[path] = app
        return app


@contextmanager
def app_context(job: Job) -> Iterator[Flask]:
    """The current app (Flask's Celery pattern), else the job's ``app`` import path."""
    if has_app_context():
        yield current_app._get_current_object()  # type: ignore[attr-defined]
        return
    if job.app is None:
        raise ConfigError(
            "a deferred handler ran outside an app context: run the worker inside"
            " app.app_context() (Flask's celery_init_app pattern) or pass"
            " app='pkg.module:create_app' to the queue"
        )
    app = load_app(job.app)
    with app.app_context():
        yield app


def find_route(receiver: Receiver, name: str) -> Route:
    for route in receiver.hooks.router.routes:
        if route.name == name:
            return route
    raise ConfigError(f"no handler named {name!r} on receiver {receiver.name!r} in this worker")


def perform(data: Mapping[str, Any], *, final: bool = False) -> str:
    """Run a job from its JSON form; the entry point of every queue adapter.

    ``final`` says the queue will not run the job again if it fails: the
    delivery is then marked failed in the inbox (see :func:`run_job`).
    """
    return run(Job.from_json(data), final=final)


def run(job: Job, *, final: bool = False) -> str:
    """:func:`perform` for a job already parsed (the Celery task reads its ``max_retries``)."""
    with app_context(job) as app:
        return run_job(app, job, final=final)


def run_job(app: Flask, job: Job, *, final: bool = False) -> str:
    """Run the job's handler unless it already succeeded; ``"handled"`` or ``"duplicate"``.

    Raises :class:`InFlight` while another worker holds the handler, and
    re-raises the handler's own exception after releasing the record (as
    :class:`HandlerFailed`, with the credentials blanked, when its traceback
    quotes one: the queue logs what it is given). The claim is renewed
    while the handler runs, as on the web side, so a slow handler is not
    run again by a redelivery. Every failure, a handler this worker does not
    know included, is an attempt of the delivery; a ``final`` one also marks
    it failed, so the inbox shows it and a plain replay runs this handler again.
    """
    event = job.event
    receiver = get_receiver(app, event.receiver)
    if job.ns and job.ns != receiver.ns:
        raise ConfigError(
            f"a job of namespace {job.ns!r} reached a worker whose receiver {receiver.name!r} is"
            f" {receiver.ns!r}: route each app's jobs to its own workers (CeleryQueue(queue=...));"
            " if it is the same app, the web side and the worker build it under other import"
            " names (one run as __main__?) or with another HOOKS_NAMESPACE: set the same"
            " HOOKS_NAMESPACE on both"
        )
    started = time.perf_counter()
    store, ns = receiver.store, handler_namespace(receiver.ns)
    try:
        route = find_route(receiver, job.handler)
    except ConfigError as exc:
        # Renamed or removed since the enqueue, or not deployed on this worker yet: retried
        # like a failure, and an attempt of the delivery, which the last run marks failed.
        failed, at = job.handler, receiver.now()
        entry = log_entry(event, "error", 500, started, (), "handler failed", error=exc, failed=failed, at=at)
        log_quietly(store, receiver.ns, entry)
        if final:
            _mark_failed(receiver, job.handler, job)
        raise
    key = handler_key(event.id, route.name, job.rerun)
    lease = job.lease if job.lease is not None else receiver.settings.lease
    # Kept as long as the delivery is: a replay within its retention hands this handler
    # over again (see _mark_failed), and only this record says that it already ran.
    ttl = max(receiver.settings.dedupe_ttl, receiver.settings.retention)
    claim = store.claim(ns, key, now=receiver.now(), lease=lease, ttl=max(ttl, lease))
    if claim.state == "done":
        log.info("deferred %s for %s %s already ran", route.name, receiver.name, event.id)
        entry = log_entry(event, "duplicate", 200, started, (route.name,), at=receiver.now())
        log_quietly(store, receiver.ns, entry)
        return "duplicate"
    if claim.state == "inflight":
        raise Held(after=claim.retry_after)
    leases = receiver.pipeline.leases
    held = leases.hold(store, ns, key, claim.token, lease=lease, clock=receiver.now)
    failure: HandlerFailed | None = None
    try:
        try:
            _not_done(call_handler(route, event))
        finally:
            leases.drop(held)  # before the release or the completion: nothing renews after them
    except BaseException as exc:
        if leases.lost(held):  # a renewal found it taken over; the release says nothing
            log.error("deferred %s for %s %s lost its lease while it ran: another run claimed it, which"
                      " may have run it too", route.name, receiver.name, event.id)  # fmt: skip
        try:
            store.release(ns, key, claim.token, now=receiver.now())
        except StoreUnavailable:
            log.warning("could not release %s %s; its lease will expire", ns, key)
        if not isinstance(exc, Exception):
            raise
        secrets = receiver.credentials(event)
        _failed(app, receiver, route, job, exc, started, secrets, final=final)
        if not _quotes(exc, secrets):
            raise
        # Raised outside this block, so that it carries no trace of the original.
        failure = HandlerFailed(f"{type(exc).__name__}: {scrub(str(exc), secrets)}")
        failure.after = getattr(exc, "after", None)  # a Retry's delay, for the queue's countdown
    if failure is not None:
        raise failure
    try:
        store.complete(ns, key, claim.token, outcome="handled", reply=None, now=receiver.now(), ttl=ttl)
    except LeaseLost:
        # Frozen past its lease (a stopped process, a long pause), or its record lost: another
        # run took the handler over, and may have run it too.
        log.error(
            "deferred %s for %s %s lost its lease while it ran: another run claimed it, which may"
            " have run it too (a worker frozen or paused past its lease, a record the store lost)",
            route.name,
            receiver.name,
            event.id,
        )
        raise
    # At the worker's time, not the delivery's receipt: attempts are shown in the order they were made.
    log_quietly(
        store, receiver.ns, log_entry(event, "handled", 200, started, (route.name,), at=receiver.now())
    )
    # The same arguments as the request's event_handled: a subscriber may name ``deferred``.
    signals.send_safely(
        signals.event_handled,
        app,
        lambda: receiver.credentials(event),
        receiver=receiver.name,
        event=event,
        handlers=(route.name,),
        deferred=(),
    )
    return "handled"


def _not_done(value: object) -> None:
    """Raise :class:`Declined` for a non-2xx return value, as a request does: the handler
    says it did not do its work (``("busy", 503)``), so the queue retries it. Any other
    value answers nobody here, rendered or not."""
    if isinstance(value, Reply):  # abort(422)
        refuse_not_done(value)
        return
    if not isinstance(value, tuple) and not hasattr(value, "status_code"):
        return  # a body alone (or None) is a 200: nothing to render
    try:
        reply = render(value)
    except Exception:
        return
    refuse_not_done(reply)


def _quotes(exc: BaseException, secrets: list[str]) -> bool:
    """Whether what a queue logs or keeps of ``exc`` (its traceback, its ``repr``, which
    holds its ``args``) quotes one of ``secrets``."""
    return blanked_traceback(exc, secrets) is not None or scrub(repr(exc), secrets) != repr(exc)


def _failed(
    app: Flask,
    receiver: Receiver,
    route: Route,
    job: Job,
    exc: Exception,
    started: float,
    secrets: list[str],
    *,
    final: bool,
) -> None:
    """Signal, log and record a failed run: an attempt of the delivery, with the traceback;
    on the ``final`` run, the delivery marked failed too (:func:`_mark_failed`)."""
    event, handler = job.event, route.name
    signals.send_safely(
        signals.handler_failed,
        app,
        lambda: secrets,
        receiver=receiver.name,
        event=event,
        handler=handler,
        error=exc,
    )
    log_failure(f"deferred handler {handler} failed on {receiver.name} {event.id}", exc, secrets)
    entry = log_entry(
        event,
        "error",
        500,
        started,
        (),
        "handler failed",
        error=exc,
        failed=handler,
        secrets=secrets,
        at=receiver.now(),
    )
    log_quietly(receiver.store, receiver.ns, entry)
    if final:
        _mark_failed(receiver, handler, job)


def _mark_failed(receiver: Receiver, handler: str, job: Job) -> None:
    """The queue gave up: reopen the completed delivery without ``handler``'s success and
    release it failed, so the inbox lists it and a plain replay hands ``handler`` over again.

    Only synchronous handlers keep their success: a deferred one's is its worker's record,
    which a plain replay's job consults (a duplicate where it succeeded, a run where it
    failed). A failed re-run frees the handler's plain record too, which its first run
    completed, so that job runs it. While a sender's retry, a replay or the web request
    itself holds the delivery (a worker in another process can fail before the request
    that enqueued the job has answered), the mark waits for it to let go, for at most a
    lease: a holder that keeps it longer renews it or has crashed. Nothing is marked when
    the delivery is gone or the store is down: the failure is then only the attempt logged
    with its traceback.
    """
    store, ns, lease, id = receiver.store, receiver.ns, receiver.settings.lease, job.event.id
    if receiver.pipeline.leases.after_drop(ns, id, lambda: _mark_failed(receiver, handler, job)):
        return  # run inline by the request that holds the delivery: marked once it lets go
    routes = receiver.hooks.router.match(job.event.type)
    deferred = {handler, *(r.name for r in routes if r.defer)}  # unmarked, even if "enqueued"
    kept = [r.name for r in routes if r.name not in deferred]
    deadline, pause = time.monotonic() + lease, _MARK_PAUSE
    try:
        if job.rerun:  # with the job's own lease: a longer one held by a running plain job looks stale
            held = max(lease, job.lease or 0)
            store.forget(handler_namespace(ns), handler_key(id, handler), now=receiver.now(), lease=held)
        claim = store.reopen(ns, id, now=receiver.now(), lease=lease, rerun=deferred, keep=kept)
        while claim.state == "inflight" and time.monotonic() + pause <= deadline:
            time.sleep(pause)
            pause = min(pause * 2, _MARK_PAUSE_MAX)
            claim = store.reopen(ns, id, now=receiver.now(), lease=lease, rerun=deferred, keep=kept)
        if claim.state == "new":
            store.release(ns, id, claim.token, now=receiver.now())
            return
    except (LookupError, InFlight, StoreUnavailable):
        pass
    log.warning("could not mark %s %s failed (held, gone, store down): %s failed", receiver.name, id, handler)
