"""Acknowledgement latency: a deferred handler vs a 1-second synchronous one.

Noukai's, Narada's and the archived webhook guide ask for a quick 2xx
with the heavy work on a queue. This posts signed deliveries through the test client to three
receivers that share one handler doing one second of work: run inline,
handed to RQ, and handed to Celery (both on a private redis-server, no
worker needed: the acknowledgement is what is measured). The store is
the default SQLite file, so every ack includes the durable completion.

    python -m bench.defer_ack          # prints the table and the ratios

:func:`measure` returns the numbers for ``python -m bench``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.defer import CeleryQueue, Deferral, RQQueue

from .common import SECRET, generic_request, redis_server

WORK_SECONDS = 1.0


def heavy(event: Event) -> None:
    """Stands in for the slow part of a real handler."""
    time.sleep(WORK_SECONDS)


def _app(instance: str, defer: Deferral | None, celery_app: object = None) -> Flask:
    app = Flask("defer_ack", instance_path=instance)
    app.config.update(HOOKS_SECRET=SECRET)
    hooks = Hooks()
    hooks.on("order.created", defer=defer)(heavy)
    hooks.init_app(app)
    if celery_app is not None:
        app.extensions["celery"] = celery_app
    return app


def _ack_times(app: Flask, n: int, prefix: str) -> list[float]:
    client = app.test_client()
    times = []
    for i in range(n):
        body, headers = generic_request(f"{prefix}-{i}")
        start = time.perf_counter()
        response = client.post("/webhooks", data=body, headers=headers)
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise SystemExit(f"{prefix}: unexpected {response.status_code} {response.data!r}")
    return times


def measure(n_deferred: int = 200, n_sync: int = 3) -> dict[str, float]:
    """Median seconds to acknowledge: ``sync``, ``rq``, ``celery``."""
    from celery import Celery

    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        celery_app = Celery("defer_ack", broker=url, set_as_current=False)
        celery_app.conf.task_ignore_result = True
        apps = {
            "sync": _app(f"{tmp}/sync", None),
            # No worker runs here (only the acknowledgement is timed), so the app path is never loaded.
            "rq": _app(f"{tmp}/rq", RQQueue(url, app="bench.defer_ack:no_worker")),
            "celery": _app(f"{tmp}/celery", CeleryQueue(celery_app)),
        }
        _ack_times(apps["rq"], 5, "warm-rq")
        _ack_times(apps["celery"], 5, "warm-celery")
        return {
            "sync": statistics.median(_ack_times(apps["sync"], n_sync, "sync")),
            "rq": statistics.median(_ack_times(apps["rq"], n_deferred, "rq")),
            "celery": statistics.median(_ack_times(apps["celery"], n_deferred, "celery")),
        }


def main() -> None:
    result = measure()
    sync = result["sync"]
    print(f"ack latency (median), handler doing {WORK_SECONDS:.0f} s of work;", "SQLite store, local Redis")
    print(f"  {'synchronous':<12} {sync * 1e3:9.2f} ms")
    for name in ("rq", "celery"):
        print(f"  {name:<12} {result[name] * 1e3:9.2f} ms   ratio deferred/sync = {result[name] / sync:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
