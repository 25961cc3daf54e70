"""The worker against an unlucky world: slow handlers, failures the queue gives up on,
credentials in tracebacks and jobs, another app's jobs, a job refused by its format."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, abort, make_response

from flask_hooks import ConfigError, Event, HookError, Hooks, Retry
from flask_hooks.defer import Job
from flask_hooks.defer.base import HandlerFailed
from flask_hooks.defer.worker import perform, run_job
from flask_hooks.providers import Narada
from flask_hooks.stores.leases import LeaseKeeper
from flask_hooks.stores.memory import MemoryStore

from ..conftest import generic_post
from ..helpers import ManualClock
from .test_deferral import ListQueue, send

TOKEN = "tok-ab12cd34"
SECRET = "cb-secret-9f8e7d"
NARADA_BODY = {"requestId": "req-1", "status": "success", "secret": SECRET, "response": {"text": "ok"}}


class Timer(ManualClock):
    """The lease keeper's monotonic timer, moved by hand."""


def test_a_slow_deferred_handler_keeps_its_claim_so_a_redelivery_does_not_run_it(
    make_app: Callable[..., Flask],
) -> None:
    clock, timer = ManualClock(), Timer(0.0)
    queue = ListQueue(lease=30)
    hooks = Hooks(store=MemoryStore(), clock=clock)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)
    runs: list[str] = []
    copies: list[BaseException] = []

    @hooks.on("payment.succeeded", defer=queue)
    def slow(event: Event) -> None:
        runs.append(event.id)
        for _ in range(4):  # 80 s of work against the job's 30 s lease
            clock.advance(20)
            timer.advance(20)
            assert keeper.tick() == 1
        with pytest.raises(HookError) as copy:  # the broker redelivers the job meanwhile
            run_job(app, Job.from_json(queue.jobs[0]))
        copies.append(copy.value)

    assert send(app).status_code == 200
    with app.app_context():
        assert perform(queue.jobs[0]) == "handled"
    assert runs == ["evt_1"]
    [copy] = copies
    assert copy.status == 409 and copy.after == 30  # the renewed lease
    assert keeper.tick() == 0  # nothing is held once the run is over


def test_a_worker_frozen_past_its_lease_logs_the_lost_lease_as_an_error(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Frozen (SIGSTOP, a VM paused) past its lease, the worker finds on resuming that a
    redelivery ran the handler: its completion is refused, and the log says so as an error,
    not only the queue's own "Retry in 1s: LeaseLost"."""
    from flask_hooks import LeaseLost

    clock, queue = ManualClock(), ListQueue(lease=30)
    hooks = Hooks(store=MemoryStore(), clock=clock)
    app = make_app(hooks)
    hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=Timer(0.0), thread=False)  # no renewal

    runs: list[str] = []

    @hooks.on("payment.succeeded", defer=queue)
    def frozen(event: Event) -> None:
        runs.append(event.id)
        if len(runs) == 1:
            clock.advance(31)  # the lease ran out: a redelivery takes the handler over
            assert run_job(app, Job.from_json(queue.jobs[0])) == "handled"

    assert send(app).status_code == 200
    with app.app_context(), caplog.at_level(logging.ERROR, "flask_hooks"), pytest.raises(LeaseLost):
        perform(queue.jobs[0])
    assert len(runs) == 2  # unavoidable once the first had started: what the log is for
    assert "lost its lease while it ran: another run claimed it" in caplog.text


def test_a_worker_taken_over_whose_handler_then_fails_logs_the_lost_lease(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    # Its release is fenced and says nothing: only the renewal saw the takeover.
    clock, timer, queue = ManualClock(), Timer(0.0), ListQueue(lease=30)
    hooks = Hooks(store=MemoryStore(), clock=clock)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)
    runs: list[str] = []

    @hooks.on("payment.succeeded", defer=queue)
    def frozen(event: Event) -> None:
        runs.append(event.id)
        if len(runs) == 1:
            clock.advance(31)
            assert run_job(app, Job.from_json(queue.jobs[0])) == "handled"
            timer.advance(31)
            assert keeper.tick() == 0  # the renewal finds it taken over
            raise RuntimeError("the first run fails after all")

    assert send(app).status_code == 200
    with app.app_context(), caplog.at_level(logging.ERROR, "flask_hooks"), pytest.raises(RuntimeError):
        perform(queue.jobs[0])
    assert "lost its lease while it ran: another run claimed it" in caplog.text


def test_a_failure_the_queue_gives_up_on_shows_in_the_inbox_and_a_replay_runs_it(
    make_app: Callable[..., Flask],
) -> None:
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    broken = [True]
    ran: list[str] = []

    @hooks.on("payment.succeeded", name="audit")
    def audit(event: Event) -> None:
        ran.append("audit")

    @hooks.on("payment.succeeded", name="charge", defer=queue)
    def charge(event: Event) -> None:
        ran.append("charge")
        if broken[0]:
            raise RuntimeError("card processor said no")

    assert send(app).status_code == 200
    inbox = hooks.inbox(app)
    with app.app_context():
        with pytest.raises(RuntimeError):
            perform(queue.jobs[0], final=False)  # the queue will retry: not failed yet
        assert inbox.get("evt_1").status == "received"  # type: ignore[union-attr]
        with pytest.raises(RuntimeError):
            perform(queue.jobs[0], final=True)
    delivery = inbox.get("evt_1")
    assert delivery is not None
    assert delivery.status == "failed"
    assert delivery.handlers == {"audit": "succeeded", "charge": "failed"}
    failed = [a for a in delivery.attempts if a.failed]
    assert len(failed) == 2
    assert all("card processor said no" in a.error and "Traceback" in a.error for a in failed)
    assert inbox.query(status="failed") == [delivery]

    broken[0] = False  # the fix is deployed; the operator replays
    after = inbox.replay("evt_1")
    assert len(queue.jobs) == 2  # the failed handler is handed to the queue again, only it
    with app.app_context():
        assert perform(queue.jobs[1]) == "handled"
    assert ran == ["audit", "charge", "charge", "charge"]
    assert after.status == "received"


def narada_app(make_app: Callable[..., Flask], queue: ListQueue) -> tuple[Flask, Hooks]:
    hooks = Hooks(provider=Narada(token=TOKEN, secret=SECRET), store=MemoryStore())
    app = make_app(hooks)

    @hooks.on("success", defer=queue)
    def leaky(event: Event) -> None:
        raise ValueError(f"unexpected callback {event.payload['secret']} ({event.headers['Authorization']})")

    return app, hooks


def test_neither_the_job_nor_what_the_worker_raises_or_logs_carries_a_credential(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    queue = ListQueue()
    app, _ = narada_app(make_app, queue)
    response = app.test_client().post(
        "/webhooks", data=json.dumps(NARADA_BODY), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    [job] = queue.jobs
    assert TOKEN not in json.dumps(job)  # the broker never holds the sender's token
    assert ("authorization", "[redacted]") in job["headers"]
    with app.app_context(), caplog.at_level(logging.INFO), pytest.raises(HandlerFailed) as raised:
        perform(job)
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    shown = str(raised.value) + "".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "unexpected callback" in shown and "ValueError" in shown
    assert SECRET not in shown and TOKEN not in shown


def test_a_handler_error_without_a_credential_is_raised_as_it_is(make_app: Callable[..., Flask]) -> None:
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)

    @hooks.on("payment.succeeded", defer=queue)
    def plain(event: Event) -> None:
        raise KeyError("missing")

    send(app)
    with app.app_context(), pytest.raises(KeyError):
        perform(queue.jobs[0])


def test_a_job_of_another_app_is_refused_not_checked_against_this_app_s_records(
    tmp_path: Any,
) -> None:
    store, queue, ran = MemoryStore(), ListQueue(), []
    apps = []
    for name in ("shop_a", "shop_b"):  # one worker image, two apps, one shared store
        hooks = Hooks(store=store)
        hooks.on("payment.succeeded", name="charge", defer=queue)(lambda event, name=name: ran.append(name))
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(TESTING=True, HOOKS_SECRET="whsec-test-secret")
        hooks.init_app(app)
        apps.append(app)
    delivery = {"id": "evt_1", "type": "payment.succeeded"}
    assert generic_post(apps[1].test_client(), delivery, secret="whsec-test-secret").status_code == 200
    with apps[0].app_context(), pytest.raises(ConfigError, match="shop_b"):
        perform(queue.jobs[0])  # app B's job reached app A's worker
    with apps[1].app_context():
        assert perform(queue.jobs[0]) == "handled"
    assert ran == ["shop_b"]


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_job_format_is_a_whole_number(version: Any) -> None:
    event = Event("e1", "a.b", {}, b"{}", {}, "generic", "hooks")
    data = dict(Job("mod.f", event).to_json(), v=version)
    with pytest.raises(HookError, match="unknown deferred job format"):
        Job.from_json(data)


def two_deferred(make_app: Callable[..., Flask], broken: set[str]) -> tuple[Flask, Hooks, ListQueue]:
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    for name in ("charge", "ship"):

        def run(event: Event, name: str = name) -> None:
            if name in broken:
                raise RuntimeError(f"{name} is broken")

        hooks.on("payment.succeeded", name=name, defer=queue)(run)
    return app, hooks, queue


def jobs_for(queue: ListQueue, handler: str) -> list[dict[str, Any]]:
    return [job for job in queue.jobs if job["handler"] == handler]


def test_a_re_run_that_fails_for_good_is_run_by_the_next_plain_replay(make_app: Callable[..., Flask]) -> None:
    broken: set[str] = set()
    app, hooks, queue = two_deferred(make_app, broken)
    inbox = hooks.inbox(app)
    assert send(app).status_code == 200
    with app.app_context():
        assert [perform(job) for job in queue.jobs] == ["handled", "handled"]
    inbox.replay("evt_1", handlers=["charge"])  # an operator re-runs it...
    broken.add("charge")
    with app.app_context(), pytest.raises(RuntimeError):
        perform(jobs_for(queue, "charge")[-1], final=True)  # ...and the re-run fails for good
    assert inbox.get("evt_1").handlers["charge"] == "failed"  # type: ignore[union-attr]
    broken.clear()
    inbox.replay("evt_1")
    with app.app_context():
        assert perform(jobs_for(queue, "charge")[-1]) == "handled"  # not "duplicate" of its first run
    assert inbox.get("evt_1").status == "received"  # type: ignore[union-attr]


def test_a_job_the_broker_lost_is_pending_and_a_replay_of_its_handler_runs_it_once(
    make_app: Callable[..., Flask],
) -> None:
    """Acknowledged once enqueued, a job the broker then lost (a Redis restarted without
    persistence) never runs: its handler was shown as succeeded. It is pending until its
    worker runs it; a replay naming it hands it over, and if the first job turns up after
    all, the worker's record runs the handler once for both."""
    clock = ManualClock()
    app, hooks, queue = two_deferred(make_app, set())
    hooks.receiver(app).clock = clock
    inbox = hooks.inbox(app)
    assert send(app).status_code == 200
    lost = jobs_for(queue, "charge")[0]
    with app.app_context():
        clock.advance(5)
        assert perform(jobs_for(queue, "ship")[0]) == "handled"  # the other job ran
    delivery = inbox.get("evt_1")
    assert delivery is not None and delivery.handlers == {"charge": "pending", "ship": "succeeded"}
    assert [a.outcome for a in delivery.attempts] == ["received", "handled"]
    assert delivery.attempts[1].at == delivery.attempts[0].at + 5  # when the worker ran it
    inbox.replay("evt_1", handlers=["charge"])
    assert [len(jobs_for(queue, name)) for name in ("charge", "ship")] == [2, 1]
    with app.app_context():
        assert perform(jobs_for(queue, "charge")[-1]) == "handled"
        assert perform(lost) == "duplicate"  # the lost job turned up after all: run once
    assert inbox.get("evt_1").handlers == {"charge": "succeeded", "ship": "succeeded"}  # type: ignore[union-attr]


def test_a_dry_run_says_a_queued_handler_is_left_to_its_job(make_app: Callable[..., Flask]) -> None:
    """A plain replay leaves a handler whose job is queued to that job: the dry run said it
    would run it, and the replay then ran nothing."""
    app, hooks, queue = two_deferred(make_app, set())
    assert send(app).status_code == 200
    with app.app_context():
        assert perform(jobs_for(queue, "ship")[0]) == "handled"
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None and delivery.queued == ("charge",)
    dry = app.test_cli_runner().invoke(args=["hooks", "replay", "evt_1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would run: nothing (queued, left to their jobs: charge" in dry.output


def test_a_handler_that_ran_before_it_was_deferred_shows_as_succeeded(make_app: Callable[..., Flask]) -> None:
    """Its success was a synchronous run, which no worker attempt records."""
    store = MemoryStore()
    before, after = Hooks(store=store), Hooks(store=store)  # the app before and after a deploy
    before.on("payment.succeeded", name="book")(lambda event: None)
    after.on("payment.succeeded", name="book", defer=ListQueue())(lambda event: None)
    assert send(make_app(before)).status_code == 200
    app = make_app(after)
    assert after.inbox(app).get("evt_1").handlers == {"book": "succeeded"}  # type: ignore[union-attr]


def test_a_failure_that_could_not_be_marked_is_not_hidden_by_a_later_one(
    make_app: Callable[..., Flask],
) -> None:
    """``ship`` fails for good while the web request still holds the delivery (not marked);
    ``charge`` fails for good later. The delivery's reopening must not mark ``ship`` done."""
    broken = {"charge", "ship"}
    app, hooks, queue = two_deferred(make_app, broken)
    held: list[None] = []

    @hooks.on("payment.succeeded", name="zz_last")
    def last(event: Event) -> None:  # runs after both hand-overs, while the delivery is held
        with pytest.raises(RuntimeError):
            perform(jobs_for(queue, "ship")[0], final=True)
        held.append(None)

    assert send(app).status_code == 200 and held
    with app.app_context(), pytest.raises(RuntimeError):
        perform(jobs_for(queue, "charge")[0], final=True)
    broken.clear()
    hooks.inbox(app).replay("evt_1")
    assert [len(jobs_for(queue, name)) for name in ("charge", "ship")] == [2, 2]  # both handed over again
    with app.app_context():
        assert [perform(jobs_for(queue, name)[-1]) for name in ("charge", "ship")] == ["handled", "handled"]


def test_a_credential_in_an_exception_s_args_is_blanked_too(make_app: Callable[..., Flask]) -> None:
    """Celery logs ``repr(exc)`` and result backends keep ``exc.args``, not ``str(exc)``."""

    class PaymentError(Exception):
        def __str__(self) -> str:
            return "payment refused"

    queue = ListQueue()
    hooks = Hooks(provider=Narada(token=TOKEN, secret=SECRET), store=MemoryStore())
    app = make_app(hooks)

    @hooks.on("success", defer=queue)
    def leaky(event: Event) -> None:
        raise PaymentError(event.payload["secret"])

    assert (
        app.test_client()
        .post("/webhooks", data=json.dumps(NARADA_BODY), headers={"Authorization": f"Bearer {TOKEN}"})
        .status_code
        == 200
    )
    with app.app_context(), pytest.raises(HandlerFailed) as raised:
        perform(queue.jobs[0])
    assert SECRET not in repr(raised.value) and SECRET not in str(raised.value.args)


def test_a_queue_written_for_0_1_still_hands_jobs_over(make_app: Callable[..., Flask]) -> None:
    class OldQueue(ListQueue):
        def job(self, handler: str, event: Event, *, rerun: str = "") -> Job:  # type: ignore[override]
            return Job(handler, event, rerun=rerun)

    queue = OldQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    hooks.on("payment.succeeded", defer=queue)(lambda event: None)
    assert send(app).status_code == 200
    assert queue.jobs[0]["ns"] == ""


def test_only_another_worker_s_claim_is_a_wait_a_handler_s_own_in_flight_is_a_failure(
    make_app: Callable[..., Flask],
) -> None:
    from flask_hooks import InFlight
    from flask_hooks.defer.base import Held

    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)

    @hooks.on("payment.succeeded", defer=queue)
    def busy(event: Event) -> None:
        raise InFlight(after=5)  # e.g. a downstream API's own "in progress"

    send(app)
    with app.app_context(), pytest.raises(InFlight) as raised:
        perform(queue.jobs[0])
    assert not isinstance(raised.value, Held)  # the queue spends a retry on it


class InlineQueue(ListQueue):
    """Runs each job inside ``enqueue``, its one and only run, keeping the failure to itself
    (RQ's ``is_async=False``)."""

    def enqueue(self, job: Job) -> None:
        super().enqueue(job)
        with contextlib.suppress(RuntimeError):
            perform(self.jobs[-1], final=True)


def test_a_job_run_inline_that_fails_for_good_is_marked_once_the_request_lets_go(
    make_app: Callable[..., Flask],
) -> None:
    queue = InlineQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    broken = [True]

    @hooks.on("payment.succeeded", name="charge", defer=queue)
    def charge(event: Event) -> None:
        if broken[0]:
            raise RuntimeError("card processor said no")

    assert send(app).status_code == 200
    inbox = hooks.inbox(app)
    assert inbox.get("evt_1").handlers == {"charge": "failed"}  # type: ignore[union-attr]
    assert inbox.replay("evt_1").status == "failed"  # the replay's run fails too: marked after it
    broken[0] = False
    assert inbox.replay("evt_1").status == "received"
    assert len(queue.jobs) == 3


def test_a_failure_for_good_while_another_thread_holds_the_delivery_is_marked_once_it_lets_go(
    make_app: Callable[..., Flask],
) -> None:
    """A worker elsewhere fails ``ship`` for good before the request that enqueued it has
    answered (its last handler still runs): the mark waits for the request, not given up."""
    app, hooks, queue = two_deferred(make_app, {"ship"})
    running, go = threading.Event(), threading.Event()

    @hooks.on("payment.succeeded", name="zz_last")
    def last(event: Event) -> None:
        running.set()
        assert go.wait(30)

    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(send(app).status_code))
    request.start()
    assert running.wait(30)
    failures: list[BaseException] = []

    def worker() -> None:
        with app.app_context():
            try:
                perform(jobs_for(queue, "ship")[0], final=True)
            except RuntimeError as exc:
                failures.append(exc)

    working = threading.Thread(target=worker)
    working.start()
    while not [entry for entry in hooks.inbox(app).get("evt_1").attempts if entry.failed]:  # type: ignore[union-attr]
        time.sleep(0.01)  # the worker's run has failed; its mark waits for the request
    go.set()
    request.join(30)
    working.join(30)
    assert answers == [200] and len(failures) == 1
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None and delivery.status == "failed" and delivery.handlers["ship"] == "failed"


def test_a_replay_past_the_dedupe_ttl_does_not_run_a_deferred_handler_that_succeeded_again(
    make_app: Callable[..., Flask],
) -> None:
    """The queue gave up on ``ship``; an operator replays the delivery two days later, within
    its retention. ``charge``, which succeeded, is handed over again with it: its worker's
    record must still say so (it lived for the dedupe TTL only, a day)."""
    clock, queue = ManualClock(), ListQueue()
    hooks = Hooks(store=MemoryStore(), clock=clock)
    app = make_app(hooks)
    broken, ran = {"ship"}, []
    for name in ("charge", "ship"):

        def run(event: Event, name: str = name) -> None:
            ran.append(name)
            if name in broken:
                raise RuntimeError(f"{name} is broken")

        hooks.on("payment.succeeded", name=name, defer=queue)(run)
    assert send(app).status_code == 200
    with app.app_context():
        assert perform(jobs_for(queue, "charge")[0]) == "handled"
        with pytest.raises(RuntimeError):
            perform(jobs_for(queue, "ship")[0], final=True)
    clock.advance(2 * 86400)
    broken.clear()
    hooks.inbox(app).replay("evt_1")
    with app.app_context():
        assert [perform(jobs_for(queue, name)[-1]) for name in ("charge", "ship")] == ["duplicate", "handled"]
    assert ran == ["charge", "ship", "ship"]


def test_a_job_for_a_handler_this_worker_does_not_know_is_a_failure_the_inbox_shows(
    make_app: Callable[..., Flask],
) -> None:
    """The handler was renamed between the enqueue and the run (or the worker runs an older
    release): the queue retries it, and when it gives up the delivery is failed, not left
    ``received`` with its handler never run; a replay hands it over under its new name."""
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    ran: list[str] = []
    hooks.on("payment.succeeded", name="charge_v2", defer=queue)(lambda event: ran.append(event.id))
    assert send(app).status_code == 200
    old = dict(queue.jobs[0], handler="charge")  # enqueued by the release before the rename
    inbox = hooks.inbox(app)
    with app.app_context():
        with pytest.raises(ConfigError, match="no handler named 'charge'"):
            perform(old)
        assert inbox.get("evt_1").status == "received"  # type: ignore[union-attr]
        with pytest.raises(ConfigError):
            perform(old, final=True)
    delivery = inbox.get("evt_1")
    assert delivery is not None and delivery.status == "failed"
    assert [a.failed for a in delivery.attempts if a.failed] == ["charge", "charge"]
    assert "no handler named 'charge'" in delivery.attempts[-1].error
    inbox.replay("evt_1")
    with app.app_context():
        assert perform(queue.jobs[-1]) == "handled"
    assert ran == ["evt_1"]


def test_an_operator_re_running_a_deferred_handler_of_a_failed_delivery_runs_it_once_more(
    make_app: Callable[..., Flask],
) -> None:
    """``charge`` succeeded, the queue gave up on ``ship``: the delivery is failed, and its
    deferred handlers' marks are gone (their workers' records tell). Naming ``charge`` in a
    replay re-runs it, as for a completed delivery; it was a duplicate of its first run."""
    queue, ran = ListQueue(), []
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    hooks.on("payment.succeeded", name="charge", defer=queue)(lambda event: ran.append("charge"))

    @hooks.on("payment.succeeded", name="ship", defer=queue)
    def ship(event: Event) -> None:
        raise RuntimeError("ship is broken")

    assert send(app).status_code == 200
    with app.app_context():
        assert perform(jobs_for(queue, "charge")[0]) == "handled"
        with pytest.raises(RuntimeError):
            perform(jobs_for(queue, "ship")[0], final=True)
    hooks.inbox(app).replay("evt_1", handlers=["charge"])
    with app.app_context():
        assert perform(jobs_for(queue, "charge")[-1]) == "handled"
    assert ran == ["charge", "charge"]


def test_a_renewal_that_fails_unexpectedly_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """One claim's renewal raising what no store should (a store of the app's own, a bug)
    must not leave every claim held after it unrenewed, round after round, till they expire."""

    class OddStore(MemoryStore):
        def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
            if id == "odd":
                raise TypeError("unexpected")
            super().renew(ns, id, token, now=now, lease=lease)

    store, clock, timer = OddStore(), ManualClock(), Timer(0.0)
    keeper = LeaseKeeper(timer=timer, thread=False)
    for id in ("odd", "fine"):
        claim = store.claim("ns", id, now=clock(), lease=30, ttl=60)
        keeper.hold(store, "ns", id, claim.token, lease=30, clock=clock)
    clock.advance(20)
    timer.advance(20)
    with caplog.at_level(logging.ERROR):
        assert keeper.tick() == 1  # "fine" renewed
    assert any("odd" in r.getMessage() for r in caplog.records)
    clock.advance(20)
    assert store.claim("ns", "fine", now=clock(), lease=30, ttl=60).state == "inflight"


def test_a_worker_that_builds_the_same_app_under_another_import_name_says_how_to_fix_it(
    tmp_path: Any,
) -> None:
    """``python app.py`` names the web app ``__main__``; the worker imports it as ``app``: the
    namespaces differ, every job is refused, and the error must say why, not only "route"."""
    store, queue = MemoryStore(), ListQueue()
    hooks = Hooks(store=store)
    hooks.on("payment.succeeded", name="charge", defer=queue)(lambda event: None)
    apps = []
    for import_name, namespace in (("__main__", None), ("app", None), ("app", "shop")):
        app = Flask(import_name, instance_path=str(tmp_path / "instance"))
        app.config.update(TESTING=True, HOOKS_SECRET="whsec-test-secret")
        if namespace:
            app.config["HOOKS_NAMESPACE"] = namespace
        hooks.init_app(app)
        apps.append(app)
    assert send(apps[0]).status_code == 200
    with apps[1].app_context(), pytest.raises(ConfigError, match="set the same HOOKS_NAMESPACE on both"):
        perform(queue.jobs[0])
    assert send(apps[2], "evt_2").status_code == 200
    with apps[2].app_context():
        assert perform(queue.jobs[1]) == "handled"  # the namespace the web side and the worker share


def test_a_deferred_handler_that_answers_not_done_is_retried_as_it_is_when_synchronous(
    make_app: Callable[..., Flask],
) -> None:
    """A non-2xx return is "not done" (the sender retries it when the handler runs in the
    request); moved to a queue, the same handler must not count as done on its first run."""
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    busy = [True]

    @hooks.on("payment.succeeded", name="charge", defer=queue)
    def charge(event: Event) -> Any:
        return ({"error": "processor busy"}, 503) if busy[0] else None

    assert send(app).status_code == 200
    with app.app_context():
        with pytest.raises(HookError, match="handler answered 503"):
            perform(queue.jobs[0])  # the queue retries it
        busy[0] = False
        assert perform(queue.jobs[0]) == "handled"
        assert perform(queue.jobs[0]) == "duplicate"
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None and [a.failed for a in delivery.attempts if a.failed] == ["charge"]


def deferred_returning(make_app: Callable[..., Flask], value: Any) -> tuple[Flask, Any]:
    """An app whose one deferred handler returns ``value``, and the job its delivery queued."""
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    hooks.on("payment.succeeded", defer=queue)(lambda event: value)
    send(app)
    return app, queue.jobs[0]


@pytest.mark.parametrize("value", [("busy", 503), ({"error": "x"}, 422), ("moved", 302)])
def test_every_not_done_return_of_a_deferred_handler_is_a_failure(
    make_app: Callable[..., Flask], value: Any
) -> None:
    app, job = deferred_returning(make_app, value)
    with app.app_context(), pytest.raises(HookError, match=f"handler answered {value[1]}"):
        perform(job)


@pytest.mark.parametrize("value", [{"ok": 1}, [1, 2], "done", 42, {1, 2}, ("fine", 201)])
def test_any_other_return_of_a_deferred_handler_is_its_success(
    make_app: Callable[..., Flask], value: Any
) -> None:
    app, job = deferred_returning(make_app, value)
    with app.app_context():
        assert perform(job) == "handled"


def deferred_running(make_app: Callable[..., Flask], handler: Callable[[Event], Any]) -> tuple[Flask, Any]:
    """An app whose one deferred handler is ``handler``, and the job its delivery queued."""
    queue = ListQueue()
    hooks = Hooks(store=MemoryStore())
    app = make_app(hooks)
    hooks.on("payment.succeeded", defer=queue)(handler)
    send(app)
    return app, queue.jobs[0]


def test_a_deferred_handler_aborts_as_a_request_s_does(make_app: Callable[..., Flask]) -> None:
    # abort(response) with a 2xx was a failure in the worker: its side effect ran again on
    # every retry; abort(422) was logged as a crash with werkzeug's traceback.
    effects: list[str] = []

    def done(event: Event) -> None:
        effects.append(event.id)
        abort(make_response("done", 200))

    app, job = deferred_running(make_app, done)
    with app.app_context():
        assert perform(job) == "handled"
        assert perform(job) == "duplicate"
    assert effects == ["evt_1"]
    app, job = deferred_running(make_app, lambda event: abort(422))
    with app.app_context(), pytest.raises(HookError, match="handler answered 422"):
        perform(job)


def test_a_deferred_handler_returning_a_coroutine_has_failed(make_app: Callable[..., Flask]) -> None:
    # Recorded "handled" with none of the coroutine's work run (a RuntimeWarning at best).
    async def work() -> None: ...

    app, job = deferred_running(make_app, lambda event: work())
    with app.app_context(), pytest.raises(TypeError, match="returned a coroutine"):
        perform(job)


def test_a_retry_quoting_a_credential_keeps_its_delay(make_app: Callable[..., Flask]) -> None:
    # Raised as HandlerFailed (the credential blanked), it lost its `after`: Celery retried
    # it on the backoff (5 s), not the 300 s the handler asked for.
    from tests.conftest import SECRET

    def busy(event: Event) -> None:
        raise Retry(f"upstream refused {SECRET}", after=300)

    app, job = deferred_running(make_app, busy)
    with app.app_context(), pytest.raises(HookError) as raised:
        perform(job)
    assert raised.value.after == 300 and SECRET not in str(raised.value)


def test_a_handler_whose_completion_answer_was_lost_is_not_run_again_by_a_replay_naming_it(
    make_app: Callable[..., Flask],
) -> None:
    """The store applied a worker's completion but its answer was lost (a Redis frozen past
    the client's timeout): no attempt says the handler ran, so the inbox shows it pending,
    and the replay the docs advise then re-ran it as a job of its own, a second time."""
    from flask_hooks import StoreUnavailable

    class LostAnswer(MemoryStore):
        lose = False

        def complete(self, ns: str, id: str, token: str, **kwargs: Any) -> None:
            super().complete(ns, id, token, **kwargs)
            if self.lose:
                raise StoreUnavailable()

    queue, store, runs = ListQueue(), LostAnswer(), []
    hooks = Hooks(store=store)
    hooks.on("payment.succeeded", name="charge", defer=queue)(lambda event: runs.append(event.id))
    app = make_app(hooks)
    inbox = hooks.inbox(app)
    assert send(app).status_code == 200
    store.lose = True
    with app.app_context(), pytest.raises(StoreUnavailable):
        perform(queue.jobs[0])  # ran; its "handled" never written
    store.lose = False
    assert inbox.get("evt_1").handlers == {"charge": "pending"}  # type: ignore[union-attr]
    inbox.replay("evt_1", handlers=["charge"])
    with app.app_context():
        assert perform(queue.jobs[-1]) == "duplicate"  # the first job's run, not a re-run
    assert runs == ["evt_1"]
    assert inbox.get("evt_1").handlers == {"charge": "succeeded"}  # type: ignore[union-attr]
