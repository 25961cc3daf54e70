"""The app the tests post to and the worker subprocesses run, built the same way.

Handlers append ``<name> <event id>`` to the file in ``DEFER_OUT``, so a
test counts side effects across processes. Workers build the app from
``DEFER_*`` environment variables (:func:`worker_app`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask, current_app

from flask_hooks import Event, Hooks
from flask_hooks.defer import CeleryQueue, RQQueue

SECRET = "whsec-test-secret"
APP_PATH = "tests.defer.defer_app:worker_app"

hooks = Hooks()
celery_queue = CeleryQueue(retry_delay=0.2, max_retries=3)
rq_queue = RQQueue(app=APP_PATH, retry_delay=0, max_retries=3)


def side_effect(name: str, event: Event) -> None:
    with open(current_app.config["DEFER_OUT"], "a") as out:
        out.write(f"{name} {event.id}\n")


def fail_first_time(event: Event) -> None:
    marker = Path(current_app.config["DEFER_OUT"]).with_name(f"failed-{event.id}")
    if not marker.exists():
        marker.touch()
        raise RuntimeError("the first attempt fails")


@hooks.on("celery.ok", defer=celery_queue)
def celery_record(event: Event) -> None:
    side_effect("celery_record", event)


@hooks.on("celery.flaky", defer=celery_queue)
def celery_flaky(event: Event) -> None:
    fail_first_time(event)
    side_effect("celery_flaky", event)


@hooks.on("rq.ok", defer=rq_queue)
def rq_record(event: Event) -> None:
    side_effect("rq_record", event)


@hooks.on("rq.flaky", defer=rq_queue)
def rq_flaky(event: Event) -> None:
    fail_first_time(event)
    side_effect("rq_flaky", event)


def celery_init_app(app: Flask, broker: str) -> Celery:
    """Flask's "Background Tasks with Celery" pattern, verbatim in spirit."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=broker,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(*, store: str, broker: str, rq_url: str, out: str, instance_path: str) -> Flask:
    app = Flask("defer_app", instance_path=instance_path)
    app.config.update(
        TESTING=True, HOOKS_SECRET=SECRET, HOOKS_STORE=store, HOOKS_RQ_URL=rq_url, DEFER_OUT=out
    )
    hooks.init_app(app)
    celery_init_app(app, broker)
    return app


def worker_app() -> Flask:
    env = os.environ
    return create_app(
        store=env["DEFER_STORE"],
        broker=env["DEFER_BROKER"],
        rq_url=env["DEFER_RQ_URL"],
        out=env["DEFER_OUT"],
        instance_path=env["DEFER_INSTANCE"],
    )
