"""``hook_signals`` with a deferred handler: the worker's run is that handler's, not a second delivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.defer import Deferral, Job
from flask_hooks.defer.worker import perform


class ListQueue(Deferral):
    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[str] = []

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job.to_json())


class InlineQueue(ListQueue):
    """Runs each job inside ``enqueue``, in the request, as RQ's ``Queue(is_async=False)``."""

    def enqueue(self, job: Job) -> None:
        super().enqueue(job)
        perform(job.to_json())


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> ListQueue:
    """A list of jobs; ``parametrize("queue", ["inline"], indirect=True)``: run at once."""
    return InlineQueue() if getattr(request, "param", "") == "inline" else ListQueue()


@pytest.fixture
def app(make_app: Callable[..., Flask], queue: ListQueue) -> Flask:
    hooks = Hooks(store="memory://")
    hooks.on("order.paid", name="ledger.book")(lambda event: None)
    hooks.on("order.paid", name="ship", defer=queue)(lambda event: None)
    return make_app(hooks)


def test_processed_once_counts_the_worker_s_run_as_the_deferred_handler_s(
    app: Flask, queue: ListQueue, signed_delivery: Any, hook_signals: Any
) -> None:
    delivery = signed_delivery("order.paid")
    assert delivery.send().get_json() == {"status": "received"}
    with app.app_context():
        assert [perform(job) for job in queue.jobs] == ["handled"]

    hook_signals.assert_processed_once(delivery.id)  # "processed 2 times" before
    assert hook_signals.handler_calls(delivery.id) == {"ledger.book": 1, "ship": 1}
    assert "deferred=('ship',)" in hook_signals.timeline()


def test_processed_once_still_catches_a_deferred_handler_run_twice(
    app: Flask, queue: ListQueue, signed_delivery: Any, hook_signals: Any
) -> None:
    delivery = signed_delivery("order.paid")
    delivery.send()
    with app.app_context():
        perform(queue.jobs[0])
        app.extensions["hooks"].receivers["hooks"].hooks.inbox(app).forget(delivery.id)
        perform(queue.jobs[0])  # its claim forgotten: it runs again

    with pytest.raises(AssertionError, match="processed 2 times"):
        hook_signals.assert_processed_once(delivery.id)



@pytest.mark.parametrize("queue", ["inline"], indirect=True)
def test_processed_once_with_a_queue_that_runs_jobs_at_once(
    queue: ListQueue, signed_delivery: Any, hook_signals: Any
) -> None:
    # The worker's event_handled comes before the request's, which defers the handler.
    delivery = signed_delivery("order.paid")
    assert delivery.send().get_json() == {"status": "received"}
    assert [r.name for r in hook_signals.for_id(delivery.id)][-2:] == ["event_handled", "event_handled"]
    hook_signals.assert_processed_once(delivery.id)
