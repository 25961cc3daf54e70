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
from ..core.attempts import log_entry, log_quietly
from ..core.errors import ConfigError, InFlight, StoreUnavailable
from ..core.routing import Route
from ..extension import Receiver, get_receiver
from .base import Job, handler_key, handler_namespace, log

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


def perform(data: Mapping[str, Any]) -> str:
    """Run a job from its JSON form; the entry point of every queue adapter."""
    job = Job.from_json(data)
    with app_context(job) as app:
        return run_job(app, job)


def run_job(app: Flask, job: Job) -> str:
    """Run the job's handler unless it already succeeded; ``"handled"`` or ``"duplicate"``.

    Raises :class:`InFlight` while another worker holds the handler, and
    re-raises the handler's own exception after releasing the record.
    """
    event = job.event
    receiver = get_receiver(app, event.receiver)
    route = find_route(receiver, job.handler)
    store, ns = receiver.store, handler_namespace(receiver.ns)
    key = handler_key(event.id, route.name, job.rerun)
    lease = job.lease if job.lease is not None else receiver.settings.lease
    ttl = receiver.settings.dedupe_ttl
    started = time.perf_counter()
    claim = store.claim(ns, key, now=receiver.now(), lease=lease, ttl=max(ttl, lease))
    if claim.state == "done":
        log.info("deferred %s for %s %s already ran", route.name, receiver.name, event.id)
        log_quietly(store, receiver.ns, log_entry(event, "duplicate", 200, started, (route.name,)))
        return "duplicate"
    if claim.state == "inflight":
        raise InFlight(after=claim.retry_after)
    try:
        route.func(event)
    except BaseException as exc:
        if isinstance(exc, Exception):
            signals.send_safely(
                signals.handler_failed,
                app,
                receiver=receiver.name,
                event=event,
                handler=route.name,
                error=exc,
            )
            log_quietly(
                store, receiver.ns, log_entry(event, "error", 500, started, (route.name,), "handler failed")
            )
        try:
            store.release(ns, key, claim.token, now=receiver.now())
        except StoreUnavailable:
            log.warning("could not release %s %s; its lease will expire", ns, key)
        raise
    store.complete(ns, key, claim.token, outcome="handled", reply=None, now=receiver.now(), ttl=ttl)
    log_quietly(store, receiver.ns, log_entry(event, "handled", 200, started, (route.name,)))
    signals.send_safely(
        signals.event_handled, app, receiver=receiver.name, event=event, handlers=(route.name,)
    )
    return "handled"
