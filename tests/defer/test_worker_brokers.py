"""Deferral against unlucky brokers and workers, with real Redis, Celery and RQ processes:
a broker that stops answering, a job run again while another worker holds it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from flask_hooks.defer.base import handler_key, handler_namespace
from flask_hooks.extension import get_receiver

from ..conftest import RedisServer
from .conftest import Workers, post, side_effects, wait_for
from .defer_app import celery_queue, celery_record, create_app, hooks, rq_queue, rq_record

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, so that it can be frozen."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def post_while_frozen(app: Flask, server: RedisServer, type: str, id: str) -> Any:
    """Post with the broker stopped (SIGSTOP: connections open, nothing answers)."""
    assert server.proc is not None
    answers: list[Any] = []
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: answers.append(post(app, type, id)))
        sender.start()
        sender.join(120)  # a guard against a hang, not a speed goal: a hung post fails here
        hung = sender.is_alive()
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    sender.join()
    assert not hung, "the post waited on the frozen broker until it was thawed"
    return answers[0]


def test_a_frozen_celery_broker_answers_503_and_the_retry_enqueues(
    defer_env: dict[str, str], broker: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery_queue, "publish_timeout", 0.5, raising=False)
    app = create_app(**defer_env | {"broker": broker.url})
    assert post(app, "celery.ok", "evt-1").status_code == 200  # the pool's connection is open
    frozen = post_while_frozen(app, broker, "celery.ok", "evt-2")
    assert frozen.status_code == 503
    assert frozen.get_json()["reason"] == "queue unavailable"
    assert post(app, "celery.ok", "evt-2").status_code == 200  # released: the retry enqueues
    # The frozen publish may land when the broker thaws: the worker's record runs it once.
    assert redis.Redis.from_url(broker.url).llen("celery") >= 2


def test_a_frozen_rq_broker_answers_503_and_the_retry_enqueues(
    defer_env: dict[str, str], broker: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rq_queue, "publish_timeout", 0.5, raising=False)
    app = create_app(**defer_env | {"rq_url": broker.url})
    assert post(app, "rq.ok", "job-1").status_code == 200
    frozen = post_while_frozen(app, broker, "rq.ok", "job-2")
    assert frozen.status_code == 503
    assert post(app, "rq.ok", "job-2").status_code == 200
    assert len(Queue("default", connection=redis.Redis.from_url(broker.url))) >= 2


def hold_handler(app: Flask, id: str, handler: str, lease: float) -> None:
    """Claim a handler's worker record as another worker would, for ``lease`` seconds."""
    receiver = get_receiver(app, "hooks")
    ns = handler_namespace(receiver.ns)
    claim = receiver.store.claim(ns, handler_key(id, handler), now=time.time(), lease=lease, ttl=60)
    assert claim.state == "new"


def test_a_celery_job_run_while_another_worker_holds_it_waits_without_spending_a_retry(
    web_app: Flask, defer_env: dict[str, str], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery_queue, "max_retries", 0)  # no retry to spend on a failure
    workers.celery()
    wait_for(lambda: " ready." in workers.log(), what=workers.log())
    name = f"{celery_record.__module__}.{celery_record.__qualname__}"
    hold_handler(web_app, "evt-3", name, lease=3)  # a redelivered job's first run still holds it
    assert post(web_app, "celery.ok", "evt-3").status_code == 200
    wait_for(lambda: side_effects(defer_env) == ["celery_record evt-3"], what=workers.log())


def test_an_rq_job_run_while_another_worker_holds_it_is_put_back_not_failed(
    web_app: Flask, defer_env: dict[str, str], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rq_queue, "max_retries", 0)
    name = f"{rq_record.__module__}.{rq_record.__qualname__}"
    hold_handler(web_app, "job-3", name, lease=2)
    assert post(web_app, "rq.ok", "job-3").status_code == 200
    assert workers.rq_burst() == 0, workers.log()
    queue = Queue("default", connection=redis.Redis.from_url(defer_env["rq_url"]))
    assert len(FailedJobRegistry(queue=queue)) == 0, workers.log()
    assert len(ScheduledJobRegistry(queue=queue)) == 1  # back for when the other claim ends
    assert side_effects(defer_env) == []
    assert "no worker of queue 'default' runs a scheduler" in workers.log()  # told how to fix it
    assert "rq worker --with-scheduler" in workers.log()
    time.sleep(2.5)  # the other worker's lease runs out
    assert workers.rq_burst(scheduler=True) == 0, workers.log()
    assert side_effects(defer_env) == ["rq_record job-3"]


def test_an_rq_retry_with_a_delay_says_when_no_worker_runs_the_scheduler(
    web_app: Flask, defer_env: dict[str, str], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rq_queue, "retry_delay", 1.0)
    assert post(web_app, "rq.flaky", "job-4").status_code == 200
    assert workers.rq_burst() == 0, workers.log()
    queue = Queue("default", connection=redis.Redis.from_url(defer_env["rq_url"]))
    assert len(ScheduledJobRegistry(queue=queue)) == 1  # RQ's own retry, waiting for a scheduler
    assert "was retried after a delay, but no worker of queue 'default' runs a scheduler" in workers.log()
    time.sleep(1.5)
    assert workers.rq_burst(scheduler=True) == 0, workers.log()
    assert side_effects(defer_env) == ["rq_flaky job-4"]
    assert workers.log().count("runs a scheduler") == 1  # a worker with one says nothing


def test_an_rq_job_run_inline_that_fails_marks_the_delivery_failed_for_a_replay(
    web_app: Flask, defer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Queue(is_async=False)``, as tests use: RQ runs the job inside the enqueue, inside the
    request that holds the delivery, and never retries it. Its failure is final, and the
    delivery is marked failed once the request lets go, so a replay runs it after the fix."""
    inline = Queue("default", connection=redis.Redis.from_url(defer_env["rq_url"]), is_async=False)
    monkeypatch.setattr(rq_queue, "queue", inline)
    assert post(web_app, "rq.flaky", "job-5").status_code == 200  # RQ keeps the failure to itself
    inbox = hooks.inbox(web_app)
    delivery = inbox.get("job-5")
    assert delivery is not None and delivery.status == "failed"
    assert delivery.handlers == {"tests.defer.defer_app.rq_flaky": "failed"}
    assert len(FailedJobRegistry(queue=inline)) == 1
    assert inbox.replay("job-5").status == "received"  # the second run succeeds, inline
    assert side_effects(defer_env) == ["rq_flaky job-5"]


def test_rq_keeps_a_failed_job_with_its_delivery_for_a_week_not_a_year(
    web_app: Flask, defer_env: dict[str, str]
) -> None:
    """A failed job holds the delivery's body and payload (a provider's body credential
    too): kept as long as the inbox keeps the delivery by default, not RQ's year."""
    assert post(web_app, "rq.ok", "job-6").status_code == 200
    queue = Queue("default", connection=redis.Redis.from_url(defer_env["rq_url"]))
    [job] = queue.get_jobs()
    assert job.failure_ttl == 7 * 86400


@pytest.mark.parametrize("kind", ["celery", "rq"])
def test_a_broker_that_may_evict_queued_jobs_is_refused_unless_allowed(
    kind: str,
    defer_env: dict[str, str],
    broker: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis shared with a cache (``allkeys-lru``) may drop a queue's list under memory
    pressure: the delivery was acknowledged, its handler would never run."""
    queue = celery_queue if kind == "celery" else rq_queue
    app = create_app(**defer_env | {"broker": broker.url, "rq_url": broker.url})
    server = redis.Redis.from_url(broker.url)
    server.config_set("maxmemory", "100mb")
    server.config_set("maxmemory-policy", "allkeys-lru")
    with caplog.at_level(logging.ERROR):
        refused = [post(app, f"{kind}.ok", "evt-1") for _ in range(3)]
    for answer in refused:
        assert answer.status_code == 503 and answer.get_json()["reason"] == "queue unavailable"
    errors = [r for r in caplog.records if "maxmemory-policy noeviction" in r.getMessage()]
    assert len(errors) == 1  # once, not at every delivery the sender retries
    monkeypatch.setattr(queue, "allow_eviction", True)
    assert post(app, f"{kind}.ok", "evt-1").status_code == 200  # released: the retry enqueues
    monkeypatch.setattr(queue, "allow_eviction", False)
    server.config_set("maxmemory-policy", "noeviction")
    assert post(app, f"{kind}.ok", "evt-2").status_code == 200
