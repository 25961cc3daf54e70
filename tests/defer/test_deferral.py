"""Deferral in one process: the web side's hand-over and the worker's run, with an in-memory queue."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import (
    ConfigError,
    Event,
    Headers,
    Hooks,
    InFlight,
    QueueUnavailable,
    StoreUnavailable,
    signals,
)
from flask_hooks.core.providers import _json
from flask_hooks.defer import CeleryQueue, Deferral, Job, RQQueue
from flask_hooks.defer.base import handler_key, handler_namespace
from flask_hooks.defer.worker import perform, run_job
from flask_hooks.stores.memory import MemoryStore

from ..conftest import generic_post
from ..helpers import ManualClock


class ListQueue(Deferral):
    """A queue in a list; ``down`` makes every enqueue fail like a dead broker."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.jobs: list[dict[str, Any]] = []
        self.down = False

    def enqueue(self, job: Job) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        self.jobs.append(job.to_json())


calls: list[str] = []


def audit(event: Event) -> None:
    calls.append(f"audit {event.id}")


def charge(event: Event) -> None:
    calls.append(f"charge {event.id}")


def flaky(event: Event) -> None:
    calls.append(f"flaky {event.id}")
    if event.payload.get("fail"):
        raise RuntimeError("downstream is down")


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


class LosingStore(MemoryStore):
    """Loses the connection on the next ``complete``, as a store going down would."""

    fail_next_complete = False

    def complete(self, ns: str, id: str, token: str, **kwargs: Any) -> None:
        if self.fail_next_complete:
            self.fail_next_complete = False
            raise StoreUnavailable()
        super().complete(ns, id, token, **kwargs)


@pytest.fixture
def store() -> LosingStore:
    return LosingStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def build(make_app: Callable[..., Flask], store: MemoryStore, clock: ManualClock) -> Callable[..., Flask]:
    """An app whose handlers are ``(func, defer)`` pairs, all on ``payment.succeeded``."""

    def factory(*handlers: tuple[Callable[[Event], None], Deferral | None]) -> Flask:
        hooks = Hooks(store=store, clock=clock)
        for func, defer in handlers:
            hooks.on("payment.succeeded", defer=defer)(func)
        return make_app(hooks)

    return factory


def send(app: Flask, id: str = "evt_1", **payload: Any) -> Any:
    return generic_post(app.test_client(), {"id": id, "type": "payment.succeeded", **payload})


def test_job_round_trips_the_exact_event() -> None:
    event = Event(
        id="e1",
        type="a.b",
        payload={"x": [1, 2.5, None]},
        body=b'\x00{"x": 1}\xff',
        headers=Headers({"X-Webhook-Id": "e1", "Content-Type": "json"}),
        provider="generic",
        receiver="hooks",
        timestamp=1.5,
        received_at=2.5,
        attempt=3,
        secret_index=1,
    )
    data = Job("mod.f", event, app="pkg:create_app", lease=9).to_json()
    assert data["body"] == base64.b64encode(event.body).decode()
    job = Job.from_json(data)
    assert job.event == event
    assert (job.handler, job.app, job.lease) == ("mod.f", "pkg:create_app", 9)


def test_defer_must_be_a_queue() -> None:
    with pytest.raises(ConfigError, match="not a queue"):
        Hooks().on("x", defer="celery")(audit)
    with pytest.raises(ConfigError, match="import path"):
        RQQueue(app="create_app")
    # The app or its factory, not its import path: a TypeError from ``":" in app`` before.
    with pytest.raises(ConfigError, match="not the Flask itself"):
        RQQueue(app=Flask(__name__))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not the function itself"):
        CeleryQueue(app=lambda: Flask(__name__))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CeleryQueue(lease=0)


def test_deferred_handler_is_enqueued_and_acknowledged(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((audit, None), (charge, queue))
    handled: list[dict[str, Any]] = []
    with signals.event_handled.connected_to(lambda _s, **kw: handled.append(kw), app):
        response = send(app)
    assert response.status_code == 200
    assert response.get_json() == {"status": "received"}
    assert calls == ["audit evt_1"]  # charge waits for a worker
    assert [(j["handler"], j["id"]) for j in queue.jobs] == [(f"{__name__}.charge", "evt_1")]
    assert handled[0]["handlers"] == (f"{__name__}.audit",)
    assert handled[0]["deferred"] == (f"{__name__}.charge",)


def test_duplicate_while_queued_is_not_enqueued_again(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    assert send(app).status_code == 200
    again = send(app)
    assert again.status_code == 200 and again.get_json() == {"status": "duplicate"}
    assert len(queue.jobs) == 1


def test_broker_down_is_503_and_the_retry_enqueues(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    queue.down = True
    failed: list[dict[str, Any]] = []
    with signals.handler_failed.connected_to(lambda _s, **kw: failed.append(kw), app):
        down = send(app)
    assert down.status_code == 503
    assert down.headers["Retry-After"] == str(QueueUnavailable.after)
    assert down.get_json() == {"status": "retry", "reason": "queue unavailable"}
    assert b"refused" not in down.data
    assert isinstance(failed[0]["error"], QueueUnavailable)
    queue.down = False
    assert send(app).status_code == 200  # the claim was released, not left in flight
    assert len(queue.jobs) == 1


def test_a_failure_after_the_hand_over_does_not_enqueue_twice(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((charge, queue), (flaky, None))
    assert send(app, fail=True).status_code == 500
    assert send(app, fail=False).status_code == 200
    assert len(queue.jobs) == 1
    assert calls == ["flaky evt_1", "flaky evt_1"]


def test_moving_a_handler_from_sync_to_deferred_does_not_run_it_twice(
    build: Callable[..., Flask],
) -> None:
    sync_app = build((audit, None), (flaky, None))
    assert send(sync_app, fail=True).status_code == 500  # audit succeeded and is recorded
    queue = ListQueue()
    deferred_app = build((audit, queue), (flaky, None))
    assert send(deferred_app, fail=False).status_code == 200
    assert queue.jobs == []
    assert calls.count("audit evt_1") == 1


def test_moving_a_handler_from_deferred_to_sync_does_not_run_it_twice(
    build: Callable[..., Flask],
) -> None:
    queue = ListQueue()
    deferred_app = build((audit, queue), (flaky, None))
    assert send(deferred_app, fail=True).status_code == 500  # audit is already queued
    sync_app = build((audit, None), (flaky, None))
    assert send(sync_app, fail=False).status_code == 200
    assert "audit evt_1" not in calls
    assert len(queue.jobs) == 1


def test_the_worker_runs_a_job_once_and_signals(build: Callable[..., Flask], store: MemoryStore) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    job = Job.from_json(queue.jobs[0])
    handled: list[dict[str, Any]] = []
    with app.app_context(), signals.event_handled.connected_to(lambda _s, **kw: handled.append(kw), app):
        assert perform(queue.jobs[0]) == "handled"
        assert perform(queue.jobs[0]) == "duplicate"  # a redelivery of the same job
    assert calls == ["charge evt_1"]
    # The arguments of the request's event_handled, so a subscriber naming them all works.
    ran = (f"{__name__}.charge",)
    assert handled == [{"receiver": "hooks", "event": job.event, "handlers": ran, "deferred": ()}]
    statuses = [e.status for e in store.deliveries(Hooks().receiver(app).ns)]
    assert statuses[:2] == ["duplicate", "handled"]


def test_the_workers_handled_lines_are_what_deliveries_status_handled_lists(
    build: Callable[..., Flask],
) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    with app.app_context():
        assert perform(queue.jobs[0]) == "handled"
    result = app.test_cli_runner().invoke(args=["hooks", "deliveries", "--status", "handled"])
    assert result.exit_code == 0, result.output
    [_header, line] = result.output.splitlines()
    assert line.split()[3:6] == ["evt_1", "payment.succeeded", "handled"], line


def test_a_failing_worker_run_releases_and_reraises(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((flaky, queue))
    send(app, fail=True)
    job = Job.from_json(queue.jobs[0])
    failed: list[dict[str, Any]] = []
    with signals.handler_failed.connected_to(lambda _s, **kw: failed.append(kw), app):
        with pytest.raises(RuntimeError):
            run_job(app, job)
        with pytest.raises(RuntimeError):
            run_job(app, job)  # released, so the queue's retry runs it again
    assert calls == ["flaky evt_1", "flaky evt_1"]
    assert [f["handler"] for f in failed] == [f"{__name__}.flaky"] * 2


def test_a_job_held_by_another_worker_is_in_flight(build: Callable[..., Flask], store: MemoryStore) -> None:
    queue = ListQueue(lease=30)
    app = build((charge, queue))
    send(app)
    job = Job.from_json(queue.jobs[0])
    key = handler_key("evt_1", job.handler)
    ns = handler_namespace(Hooks().receiver(app).ns)
    held = store.claim(ns, key, now=job.event.received_at, lease=30, ttl=60)
    assert held.state == "new"
    with pytest.raises(InFlight) as info:
        run_job(app, job)
    assert info.value.after == 30
    assert calls == []


def test_a_worker_outside_an_app_context_needs_an_app_path(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    with pytest.raises(ConfigError, match="app context"):
        perform(queue.jobs[0])


def test_celery_queue_without_a_celery_app_fails_loudly(build: Callable[..., Flask]) -> None:
    app = build((charge, CeleryQueue()))
    response = send(app)
    assert response.status_code == 500
    assert response.get_json() == {"status": "error", "reason": "handler failed"}
    assert calls == []


def test_no_ack_before_the_completion_is_stored_and_the_re_enqueued_job_runs_once(
    build: Callable[..., Flask], store: LosingStore, clock: ManualClock
) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    store.fail_next_complete = True
    lost = send(app)
    assert lost.status_code == 503  # enqueued, but the outcome is not durable: no 2xx
    clock.advance(61)  # the web side's lease runs out; the sender retries
    assert send(app).status_code == 200
    assert len(queue.jobs) == 2
    with app.app_context():
        assert [perform(data) for data in queue.jobs] == ["handled", "duplicate"]
    assert calls == ["charge evt_1"]


def test_an_operator_rerunning_a_deferred_handler_runs_it_once_more(
    build: Callable[..., Flask], store: MemoryStore
) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    with app.app_context():
        assert perform(queue.jobs[0]) == "handled"
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    hooks.inbox(app).replay("evt_1", handlers=[f"{__name__}.charge"])
    rerun = Job.from_json(queue.jobs[1])
    assert rerun.rerun and rerun.event.replayed
    with app.app_context():
        assert perform(queue.jobs[1]) == "handled"  # its own record: it runs again...
        assert perform(queue.jobs[1]) == "duplicate"  # ...once, however often the queue delivers it
        assert perform(queue.jobs[0]) == "duplicate"
    assert calls == ["charge evt_1", "charge evt_1"]


def test_a_rerun_job_is_a_version_old_workers_refuse(build: Callable[..., Flask]) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    with app.app_context():
        perform(queue.jobs[0])
    hooks.inbox(app).replay("evt_1", handlers=[f"{__name__}.charge"])
    assert [job["v"] for job in queue.jobs] == [1, 2]  # a worker of 0.1 would skip a rerun as done
    assert Job.from_json(queue.jobs[0]).rerun == "" and not Job.from_json(queue.jobs[0]).event.replayed


def test_naming_an_owed_deferred_handler_keeps_its_queued_job_s_record(
    build: Callable[..., Flask], store: LosingStore, clock: ManualClock
) -> None:
    """Owed (enqueued, but the delivery never completed): the replay's job and the one still
    queued are the same run, so the worker runs the handler once for both."""
    queue = ListQueue()
    app = build((audit, None), (charge, queue))
    store.fail_next_complete = True
    assert send(app).status_code == 503  # charge was enqueued, the completion was lost
    clock.advance(Hooks().receiver(app).settings.lease + 1)
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    hooks.inbox(app).replay("evt_1", handlers=[f"{__name__}.charge"])
    with app.app_context():
        assert [perform(job) for job in queue.jobs] == ["handled", "duplicate"]
    assert calls.count("charge evt_1") == 1


def test_a_forgotten_delivery_s_redelivery_runs_its_deferred_handler_afresh(
    build: Callable[..., Flask],
) -> None:
    """``forget``: "the sender's next redelivery is processed afresh". For a deferred handler
    that is its worker's record forgotten too: else the redelivery's job is a duplicate."""
    queue = ListQueue()
    app = build((audit, None), (charge, queue))
    send(app)
    with app.app_context():
        assert perform(queue.jobs[0]) == "handled"
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    assert hooks.inbox(app).forget("evt_1")
    assert send(app).get_json() == {"status": "received"}
    with app.app_context():
        assert perform(queue.jobs[1]) == "handled"
    assert calls == ["audit evt_1", "charge evt_1", "audit evt_1", "charge evt_1"]


def test_forgetting_a_delivery_whose_handler_a_worker_runs_keeps_that_worker_s_record(
    build: Callable[..., Flask], store: MemoryStore, clock: ManualClock
) -> None:
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    job = Job.from_json(queue.jobs[0])
    ns = handler_namespace(Hooks().receiver(app).ns)
    assert store.claim(ns, handler_key("evt_1", job.handler), now=clock(), lease=60, ttl=60).state == "new"
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    assert hooks.inbox(app).forget("evt_1")  # the delivery is forgotten all the same
    assert hooks.inbox(app).get("evt_1") is None
    with pytest.raises(InFlight):
        run_job(app, job)  # the redelivery's job waits for the running one, not a second run


def test_a_celery_publish_waits_for_a_pooled_connection_no_longer_than_its_publish_timeout(
    make_app: Callable[..., Flask],
) -> None:
    """Every connection of the queue's pool taken (``broker_pool_limit`` requests publishing
    to a frozen broker): the next request waits ``publish_timeout`` and answers 503, not
    for as long as the others hold theirs."""
    from celery import Celery

    celery_app = Celery("pool_test", broker="redis://127.0.0.1:1/0")
    celery_app.conf.broker_pool_limit = 1
    queue = CeleryQueue(celery_app, publish_timeout=0.3)
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    hooks.on("payment.succeeded", defer=queue)(charge)
    taken = queue._pool(celery_app).acquire(block=True)  # held by a publish that hangs
    answers: list[Any] = []
    request = threading.Thread(target=lambda: answers.append(send(app)), daemon=True)
    request.start()
    request.join(10)  # a guard against a hang, not a speed goal
    waited = request.is_alive()
    taken.release()
    request.join(30)
    assert not waited, "the request waited for the pool until its connection was let go"
    assert answers[0].status_code == 503
    assert answers[0].get_json() == {"status": "retry", "reason": "queue unavailable"}


class SerializingQueue(ListQueue):
    """Serializes each job as Celery's client does, with kombu's JSON serializer."""

    def enqueue(self, job: Job) -> None:
        from kombu.serialization import dumps

        _type, _encoding, body = dumps([(job.to_json(),), {}, {}], serializer="json")
        self.jobs.append(json.loads(body)[0][0])


def test_a_payload_too_deep_for_the_queue_s_serializer_is_a_400_not_a_503_on_every_retry(
    build: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested just below what the JSON parser takes, a payload is too deep for a serializer
    that runs deeper in the stack, inside the broker's client: the same on every retry, so
    bad input, not a queue that is down. (The parser's own limit, ``MAX_DEPTH``, now refuses
    such a body first; raised here, it lets one through, as a deep stack might.)"""
    monkeypatch.setattr(_json, "MAX_DEPTH", 10_000)
    queue = SerializingQueue()
    app = build((charge, queue))
    answers = {}
    for depth in range(850, 1000, 2):
        body = f'{{"id": "evt_{depth}", "type": "payment.succeeded", "x": {"[" * depth}{"]" * depth}}}'
        answers[depth] = generic_post(app.test_client(), body.encode())
    statuses = {response.status_code for response in answers.values()}
    assert 200 in statuses and 400 in statuses and 503 not in statuses
    refused = [r.get_json() for r in answers.values() if r.status_code == 400]
    assert {"status": "invalid", "reason": "invalid payload: nested too deeply for the queue"} in refused


def test_a_replay_naming_a_deferred_handler_whose_job_still_waits_runs_it_once(
    build: Callable[..., Flask],
) -> None:
    """The delivery is completed (``charge`` enqueued), its job not run yet (a backlog): the
    replay's job and the queued one are the same run, as for a handler still owed."""
    queue = ListQueue()
    app = build((charge, queue))
    send(app)
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    hooks.inbox(app).replay("evt_1", handlers=[f"{__name__}.charge"])
    assert [Job.from_json(job).rerun for job in queue.jobs] == ["", ""]
    with app.app_context():
        assert [perform(job) for job in queue.jobs] == ["handled", "duplicate"]
    assert calls == ["charge evt_1"]


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": 2.5},  # RQ's Retry took it at every enqueue: a 503 for every delivery
        {"max_retries": True},
        {"retry_delay": float("nan")},
        {"lease": float("inf")},
        {"lease": float("nan")},
        {"lease": 10**400},
    ],
)
def test_a_queue_s_options_are_checked_when_it_is_made(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(options))):
        RQQueue(app="pkg:create_app", **options)
    with pytest.raises(ConfigError, match=next(iter(options))):
        CeleryQueue(**options)


def test_a_celery_job_of_a_format_this_worker_does_not_know_is_retried_not_dropped() -> None:
    """The web side of a newer release is deployed first and enqueues a format this worker
    refuses: retried (as a handler it does not know yet is), so a worker of that release runs
    it, instead of a failure for good, its handler never run."""
    from celery import Celery
    from celery.signals import task_retry

    from flask_hooks.defer.base import TASK_NAME

    celery_app = Celery("format_test", broker="memory://")
    CeleryQueue(celery_app)
    event = Event("e1", "a.b", {}, b"{}", {}, "generic", "hooks")
    data = dict(Job("mod.f", event, max_retries=2).to_json(), v=99)
    retried: list[Any] = []

    def count(**kwargs: Any) -> None:
        retried.append(kwargs["reason"])

    task_retry.connect(count, weak=False)
    try:
        result = celery_app.tasks[TASK_NAME].apply(args=(data,))  # eager: each retry runs at once
    finally:
        task_retry.disconnect(count)
    assert result.state == "FAILURE"
    assert len(retried) == 2 and all("unknown deferred job format 99" in str(r) for r in retried)


def test_a_celery_job_asks_nothing_of_the_result_backend() -> None:
    """The task's result is read by nobody. With a result backend configured, ``send_task``
    asked it first (about 20 s of reconnecting to a dead one, then a 503, or a 200 past the
    sender's timeout), and the worker stored every result in it."""
    from celery import Celery

    from flask_hooks.defer.base import TASK_NAME

    celery_app = Celery("backend_test", broker="memory://", backend="redis://127.0.0.1:1/0")
    queue = CeleryQueue(celery_app)
    called: list[str] = []
    celery_app.backend.on_task_call = lambda *args, **kwargs: called.append("on_task_call")
    event = Event("e1", "a.b", {}, b"{}", {}, "generic", "hooks")
    queue.enqueue(Job("mod.f", event))
    assert called == []
    assert celery_app.tasks[TASK_NAME].ignore_result


class CeleryTask:
    """What ``run_deferred`` uses of its bound Celery task: the retry count and ``retry``."""

    def __init__(self, retries: int) -> None:
        self.request = type("Request", (), {"retries": retries})()
        self.retried: list[dict[str, Any]] = []

    def retry(self, **options: Any) -> Exception:
        self.retried.append(options)
        return RuntimeError("retried")


def test_a_celery_job_backs_off_while_the_store_is_down(
    build: Callable[..., Flask], store: MemoryStore
) -> None:
    """The worker's store down (a failover): each retry waits the job's doubling backoff, not
    StoreUnavailable's 5 s, which spent ``max_retries=10`` in under a minute; the handler then
    never ran, and nothing could record it."""
    from flask_hooks.defer.celery import run_deferred

    queue = ListQueue(retry_delay=5, max_retries=10)
    app = build((charge, queue))
    send(app)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable()

    store.claim = down  # type: ignore[method-assign]
    delays = []
    for retries in range(10):
        task = CeleryTask(retries)
        with app.app_context(), pytest.raises(RuntimeError, match="retried"):
            run_deferred(task, queue.jobs[0])
        delays.append(task.retried[0]["countdown"])
    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert calls == []


def test_a_replay_or_forget_reads_a_worker_s_record_with_the_queue_s_own_longer_lease(
    build: Callable[..., Flask], store: MemoryStore, clock: ManualClock
) -> None:
    """``Deferral(lease=600)`` on a receiver whose lease is 60: a worker's claim ends 600 s from
    now, which a reader using 60 s takes for a skewed clock's and takes over, so the running
    worker's completion fails and its handler runs again."""
    queue = ListQueue(lease=600)
    app = build((charge, queue))
    send(app)
    job = Job.from_json(queue.jobs[0])
    ns, key = handler_namespace(Hooks().receiver(app).ns), handler_key("evt_1", job.handler)
    running = store.claim(ns, key, now=clock(), lease=600, ttl=86400)  # a worker runs it
    hooks = app.extensions["hooks"].receivers["hooks"].hooks
    hooks.inbox(app).replay("evt_1", handlers=[job.handler])
    # Its record read without taking it over; no attempt says it ran (it runs now, for the first
    # time), so the replay's job is that same run: it waits for it, then finds it done.
    assert not Job.from_json(queue.jobs[1]).rerun
    assert hooks.inbox(app).forget("evt_1")
    store.complete(ns, key, running.token, outcome="handled", reply=None, now=clock(), ttl=86400)
