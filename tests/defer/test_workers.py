"""Deferral end to end: real Redis brokers, real Celery and RQ worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq import Queue

from flask_hooks import Event, signals
from flask_hooks.core.routing import Route
from flask_hooks.extension import get_receiver

from ..conftest import RedisServer, free_port
from .conftest import Workers, post, side_effects, wait_for, worker_statuses
from .defer_app import celery_record, create_app, rq_record

pytestmark = pytest.mark.slow


def celery_backlog(env: dict[str, str]) -> int:
    return int(redis.Redis.from_url(env["broker"]).llen("celery"))


def rq_backlog(env: dict[str, str]) -> int:
    return len(Queue("default", connection=redis.Redis.from_url(env["rq_url"])))


def verified_event(app: Flask, type: str, id: str) -> Event:
    """Post a delivery and keep the Event the web side built (to enqueue it again)."""
    seen: list[Event] = []
    with signals.delivery_verified.connected_to(lambda _s, **kw: seen.append(kw["event"]), app):
        assert post(app, type, id).status_code == 200
    return seen[0]


class TestCelery:
    def test_enqueue_then_ack_then_the_worker_runs_it_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        response = post(web_app, "celery.ok", "evt-1")
        assert response.status_code == 200
        assert response.get_json() == {"status": "received"}
        assert celery_backlog(defer_env) == 1
        assert side_effects(defer_env) == []  # acknowledged before the handler ran
        workers.celery()
        wait_for(lambda: worker_statuses(web_app, "evt-1") == ["handled"], what=workers.log())
        assert side_effects(defer_env) == ["celery_record evt-1"]

    def test_duplicate_while_queued_is_not_enqueued_again(
        self, web_app: Flask, defer_env: dict[str, str]
    ) -> None:
        assert post(web_app, "celery.ok", "evt-2").status_code == 200
        again = post(web_app, "celery.ok", "evt-2")
        assert again.status_code == 200
        assert again.get_json() == {"status": "duplicate"}
        assert celery_backlog(defer_env) == 1

    def test_a_failing_task_is_retried_and_its_side_effect_happens_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        assert post(web_app, "celery.flaky", "evt-3").status_code == 200
        workers.celery()
        wait_for(lambda: worker_statuses(web_app, "evt-3") == ["error", "handled"], what=workers.log())
        assert side_effects(defer_env) == ["celery_flaky evt-3"]
        assert Path(defer_env["out"]).with_name("failed-evt-3").exists()

    def test_a_job_delivered_twice_runs_the_handler_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        event = verified_event(web_app, "celery.ok", "evt-4")
        with web_app.app_context():
            route = _route(web_app, celery_record.__name__)
            route.defer.enqueue(route.defer.job(route.name, event))
        assert celery_backlog(defer_env) == 2
        workers.celery()
        wait_for(lambda: len(worker_statuses(web_app, "evt-4")) == 2, what=workers.log())
        assert sorted(worker_statuses(web_app, "evt-4")) == ["duplicate", "handled"]
        assert side_effects(defer_env) == ["celery_record evt-4"]

    def test_broker_down_answers_503_and_releases_the_claim(
        self, defer_env: dict[str, str], tmp_path: Path
    ) -> None:
        port = free_port()
        env = defer_env | {"broker": f"redis://127.0.0.1:{port}/0"}
        app = create_app(**env)
        down = post(app, "celery.ok", "evt-5")
        assert down.status_code == 503
        assert int(down.headers["Retry-After"]) >= 1
        assert down.get_json()["reason"] == "queue unavailable"

        broker = RedisServer(tmp_path)
        broker.port = port
        broker.start()
        try:
            back = post(app, "celery.ok", "evt-5")  # the sender's retry: not 409, the claim was released
            assert back.status_code == 200
            assert back.get_json() == {"status": "received"}
            assert int(redis.Redis.from_url(env["broker"]).llen("celery")) == 1
        finally:
            broker.stop()


class TestRQ:
    def test_enqueue_then_ack_then_the_worker_runs_it_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        response = post(web_app, "rq.ok", "job-1")
        assert response.status_code == 200
        assert rq_backlog(defer_env) == 1
        assert side_effects(defer_env) == []
        assert workers.rq_burst() == 0, workers.log()
        assert side_effects(defer_env) == ["rq_record job-1"]
        assert worker_statuses(web_app, "job-1") == ["handled"]

    def test_duplicate_while_queued_is_not_enqueued_again(
        self, web_app: Flask, defer_env: dict[str, str]
    ) -> None:
        assert post(web_app, "rq.ok", "job-2").status_code == 200
        assert post(web_app, "rq.ok", "job-2").get_json() == {"status": "duplicate"}
        assert rq_backlog(defer_env) == 1

    def test_a_failing_job_is_retried_and_its_side_effect_happens_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        assert post(web_app, "rq.flaky", "job-3").status_code == 200
        assert workers.rq_burst() == 0, workers.log()
        assert worker_statuses(web_app, "job-3") == ["error", "handled"], workers.log()
        assert side_effects(defer_env) == ["rq_flaky job-3"]

    def test_a_job_enqueued_twice_runs_the_handler_once(
        self, web_app: Flask, defer_env: dict[str, str], workers: Workers
    ) -> None:
        event = verified_event(web_app, "rq.ok", "job-4")
        with web_app.app_context():
            route = _route(web_app, rq_record.__name__)
            route.defer.enqueue(route.defer.job(route.name, event))
        assert rq_backlog(defer_env) == 2
        assert workers.rq_burst() == 0, workers.log()
        assert worker_statuses(web_app, "job-4") == ["handled", "duplicate"]
        assert side_effects(defer_env) == ["rq_record job-4"]

    def test_broker_down_answers_503_and_a_retry_succeeds(
        self, defer_env: dict[str, str], tmp_path: Path, workers: Workers
    ) -> None:
        broker = RedisServer(tmp_path)
        env = defer_env | {"rq_url": f"redis://127.0.0.1:{broker.port}/0"}
        app = create_app(**env)
        assert post(app, "rq.ok", "job-5").status_code == 503
        broker.start()
        try:
            assert post(app, "rq.ok", "job-5").status_code == 200
            assert len(Queue("default", connection=redis.Redis.from_url(env["rq_url"]))) == 1
            assert json.loads(post(app, "rq.ok", "job-5").data) == {"status": "duplicate"}
        finally:
            broker.stop()


def _route(app: Flask, name: str) -> Route:
    receiver = get_receiver(app, "hooks")
    return next(r for r in receiver.hooks.router.routes if r.func.__name__ == name)
