"""The receiver against a careless world: slow handlers, odd return values,
shared stores, raising subscribers, bad settings, other extensions."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, abort, redirect, request, url_for
from flask_wtf import CSRFProtect
from werkzeug.exceptions import NotFound

from flask_hooks import ConfigError, Event, Hooks, signals
from flask_hooks.core.replies import MAX_REPLY
from flask_hooks.stores import MemoryStore
from flask_hooks.stores.leases import LeaseKeeper
from tests.conftest import SECRET, generic_post
from tests.helpers import ManualClock
from tests.postgres import pg_url, postgres  # noqa: F401 - fixtures

PAYLOAD = {"id": "evt_1", "type": "resource.created"}


# A handler that outlives its lease -------------------------------------------------------


class Timer(ManualClock):
    """The keeper's monotonic timer, moved by hand."""


def test_a_slow_handler_keeps_its_lease_and_is_not_run_twice(make_app: Callable[..., Flask]) -> None:
    clock, timer = ManualClock(), Timer(0.0)
    hooks = Hooks(store="memory://", clock=clock, lease=30)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)
    client = app.test_client()
    copies: list[Any] = []
    calls: list[str] = []

    @hooks.on("resource.created")
    def slow(event: Event) -> None:
        calls.append(event.id)
        for _ in range(4):  # 80 s of work against a 30 s lease
            clock.advance(20)
            timer.advance(20)
            assert keeper.tick() == 1
        copies.append(generic_post(app.test_client(), PAYLOAD))  # the sender's retry arrives

    first = generic_post(client, PAYLOAD)
    assert first.status_code == 200
    assert calls == ["evt_1"]
    [copy] = copies
    assert copy.status_code == 409
    assert copy.headers["Retry-After"] == "30"  # the renewed lease, not the first one
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}


@pytest.mark.parametrize("ending", ["raises", "declines"])
def test_a_handler_taken_over_that_then_fails_is_logged_as_a_lost_lease(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    # Its release is fenced by the token and says nothing: with the keeper's warning gone, a
    # double run whose first copy failed was reported nowhere.
    clock, timer = ManualClock(), Timer(0.0)
    store = MemoryStore()
    hooks = Hooks(store=store, clock=clock, lease=30)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)

    @hooks.on("resource.created")
    def frozen(event: Event) -> Any:
        clock.advance(31)  # frozen past its lease: another worker claims it meanwhile
        assert store.claim(hooks.receiver(app).ns, event.id, now=clock(), lease=30, ttl=60).state == "new"
        timer.advance(31)
        assert keeper.tick() == 0
        if ending == "declines":
            return "busy", 503
        raise RuntimeError("the payment provider is down")

    with caplog.at_level(logging.ERROR, logger="flask_hooks"):
        assert generic_post(app.test_client(), PAYLOAD).status_code in (500, 503)
    assert "lease lost on hooks evt_1: another attempt claimed it" in caplog.text


def test_a_renewal_after_a_failed_handlers_own_release_reports_no_lost_lease(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    # Asked after the release, the renewal that ran just after it (finding the claim gone)
    # made a failure read as a takeover.
    from flask_hooks import Retry

    clock, timer = ManualClock(), Timer(0.0)

    class Releasing(MemoryStore):
        def release(self, *args: Any, **kwargs: Any) -> None:
            super().release(*args, **kwargs)
            assert keeper.tick() == 0  # the keeper's thread, just after: the claim is gone

    hooks = Hooks(store=Releasing(), clock=clock, lease=30)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)

    @hooks.on("resource.created")
    def slow(event: Event) -> None:
        timer.advance(11)  # held past a third of its lease: due for renewal
        raise Retry("not yet")

    with caplog.at_level(logging.ERROR, logger="flask_hooks"):
        assert generic_post(app.test_client(), PAYLOAD).status_code == 503
    assert "lease lost" not in caplog.text


def test_a_fast_handler_costs_no_renewal(make_app: Callable[..., Flask]) -> None:
    renewals: list[str] = []

    class Counting(MemoryStore):
        def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
            renewals.append(id)
            super().renew(ns, id, token, now=now, lease=lease)

    timer = Timer(0.0)
    hooks = Hooks(store=Counting(), lease=30)
    app = make_app(hooks)
    keeper = hooks.receiver(app).pipeline.leases = LeaseKeeper(timer=timer, thread=False)
    hooks.on("*")(lambda event: timer.advance(9) and keeper.tick())
    assert generic_post(app.test_client(), PAYLOAD).status_code == 200
    assert renewals == []
    assert keeper.tick() == 0  # nothing is held once the delivery is answered


def test_a_step_waiting_for_a_claim_runs_once_it_is_let_go_by_its_own_thread_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a job run inline hands over (its delivery marked failed): run after the drop, in
    the thread that held the claim; a step that raises is logged and changes nothing else."""
    keeper, store, clock = LeaseKeeper(thread=False), MemoryStore(), ManualClock()
    claim = store.claim("ns", "evt_1", now=clock(), lease=30, ttl=60)
    held = keeper.hold(store, "ns", "evt_1", claim.token, lease=30, clock=clock)
    ran: list[str] = []
    elsewhere: list[bool] = []
    other = threading.Thread(target=lambda: elsewhere.append(keeper.after_drop("ns", "evt_1", ran.clear)))
    other.start()
    other.join()
    assert elsewhere == [False]  # another thread's request: not its claim to wait for
    assert not keeper.after_drop("ns", "evt_2", ran.clear)

    def broken() -> None:
        raise RuntimeError("store down")

    assert keeper.after_drop("ns", "evt_1", lambda: ran.append("mark"))
    assert keeper.after_drop("ns", "evt_1", broken)
    assert keeper.after_drop("ns", "evt_1", lambda: ran.append("again"))
    assert ran == []
    with caplog.at_level(logging.ERROR, logger="flask_hooks"):
        keeper.drop(held)
    assert ran == ["mark", "again"]
    assert "waiting for ns evt_1 to be let go failed" in caplog.text
    assert not keeper.after_drop("ns", "evt_1", ran.clear)  # let go: nothing waits any more


def test_the_keeper_thread_renews_a_held_claim() -> None:
    renewed = threading.Event()

    class Watched(MemoryStore):
        def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
            super().renew(ns, id, token, now=now, lease=lease)
            renewed.set()

    store, clock = Watched(), ManualClock()
    keeper = LeaseKeeper()
    claim = store.claim("ns", "evt_1", now=clock(), lease=0.3, ttl=60)
    held = keeper.hold(store, "ns", "evt_1", claim.token, lease=0.3, clock=clock)
    try:
        assert renewed.wait(30), "the keeper's thread never renewed the claim"
    finally:
        keeper.drop(held)


def test_a_renewal_that_finds_the_claim_taken_over_stops() -> None:
    store, clock, timer = MemoryStore(), ManualClock(), Timer(0.0)
    keeper = LeaseKeeper(timer=timer, thread=False)
    claim = store.claim("ns", "evt_1", now=clock(), lease=10, ttl=60)
    held = keeper.hold(store, "ns", "evt_1", claim.token, lease=10, clock=clock)
    clock.advance(11)  # frozen past its lease: another worker took over
    assert store.claim("ns", "evt_1", now=clock(), lease=10, ttl=60).state == "new"
    timer.advance(11)
    assert keeper.tick() == 0
    assert held.lost


def test_a_renewal_racing_the_handlers_completion_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # The handler completed its claim while the keeper's thread was renewing it: the renewal
    # found it done and warned "taken over while its handler ran", sending operators after a
    # double run that never happened.
    store, clock, timer = MemoryStore(), ManualClock(), Timer(0.0)
    keeper = LeaseKeeper(timer=timer, thread=False)

    class Completing(MemoryStore):
        def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
            store.complete(ns, id, token, outcome="received", reply=None, now=now, ttl=60)
            keeper.drop(held)  # the handler's thread, between the keeper's copy and its write
            store.renew(ns, id, token, now=now, lease=lease)

    claim = store.claim("ns", "evt_1", now=clock(), lease=10, ttl=60)
    held = keeper.hold(Completing(), "ns", "evt_1", claim.token, lease=10, clock=clock)
    timer.advance(5)
    with caplog.at_level(logging.WARNING, logger="flask_hooks"):
        assert keeper.tick() == 0
    assert "taken over" not in caplog.text


def test_a_renewal_after_the_handlers_completion_but_before_it_lets_go_warns_of_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The completion committed, the holder had not let go yet, and the renewal found the claim
    # done: "taken over while its handler ran" (seen with Redis paused under 2.5 s handlers).
    store, clock, timer = MemoryStore(), ManualClock(), Timer(0.0)
    keeper = LeaseKeeper(timer=timer, thread=False)
    claim = store.claim("ns", "evt_1", now=clock(), lease=10, ttl=60)
    held = keeper.hold(store, "ns", "evt_1", claim.token, lease=10, clock=clock)
    store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=clock(), ttl=60)
    timer.advance(5)
    with caplog.at_level(logging.WARNING, logger="flask_hooks"):
        assert keeper.tick() == 0
    keeper.drop(held)
    assert "taken over" not in caplog.text


# Handler return values ---------------------------------------------------------------------


@pytest.fixture
def counted(make_app: Callable[..., Flask]) -> Callable[[Callable[[Event], Any]], tuple[Flask, list[str]]]:
    def build(handler: Callable[[Event], Any]) -> tuple[Flask, list[str]]:
        hooks = Hooks(store="memory://")
        calls: list[str] = []

        @hooks.on("*")
        def run(event: Event) -> Any:
            calls.append(event.id)
            return handler(event)

        return make_app(hooks), calls

    return build


def test_an_unrenderable_return_value_is_done_with_the_default_body(
    counted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, calls = counted(lambda event: {1, 2})
    client = app.test_client()
    first = generic_post(client, PAYLOAD)
    assert (first.status_code, first.get_json()) == (200, {"status": "received"})
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    assert calls == ["evt_1"]
    assert "could not be built" in caplog.text


def test_a_returned_coroutine_is_not_done(counted: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A plain function handing back an ``async def``'s coroutine: none of its work ran."""
    ran: list[str] = []

    async def work(event: Event) -> None:
        ran.append(event.id)

    app, calls = counted(work)
    client = app.test_client()
    for _ in range(2):
        response = generic_post(client, PAYLOAD)
        assert response.status_code == 500
        assert response.get_json() == {"status": "error", "reason": "handler failed"}
    assert calls == ["evt_1", "evt_1"] and ran == []  # released: the sender's retry runs it again
    assert "returned a coroutine" in caplog.text


@pytest.mark.parametrize(
    ("value", "status", "body"),
    [
        (("oops", 500), 500, b"oops"),
        (({"error": "no such customer"}, 422), 422, b'{"error": "no such customer"}'),
        (("busy", 503), 503, b"busy"),
    ],
)
def test_a_non_2xx_return_is_not_done(counted: Any, value: Any, status: int, body: bytes) -> None:
    app, calls = counted(lambda event: value)
    client = app.test_client()
    for _ in range(2):
        response = generic_post(client, PAYLOAD)
        assert (response.status_code, response.data) == (status, body)
    assert calls == ["evt_1", "evt_1"]  # released: the sender's retry runs it again


@pytest.mark.parametrize(
    ("aborting", "status", "body"),
    [
        (lambda: abort(422, "hunter2"), 422, {"status": "error", "reason": "handler answered 422"}),
        (lambda: abort(503), 503, {"status": "error", "reason": "handler answered 503"}),
        (lambda: abort(Response('{"busy": true}', 429, mimetype="application/json")), 429, {"busy": True}),
    ],
    ids=["abort-422", "abort-503", "abort-response"],
)
def test_a_handler_aborting_is_not_done_with_its_status(
    counted: Any, aborting: Callable[[], Any], status: int, body: Any
) -> None:
    # flask.abort() in a handler was a 500 "handler failed", whatever status it chose.
    attempts: list[int] = []

    def handler(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            aborting()

    app, calls = counted(handler)
    client = app.test_client()
    first = generic_post(client, PAYLOAD)
    assert (first.status_code, first.mimetype, first.get_json()) == (status, "application/json", body)
    assert b"hunter2" not in first.data and b"<" not in first.data  # not werkzeug's page, nor its description
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}  # released: the retry runs it
    assert calls == ["evt_1", "evt_1"]


@pytest.mark.parametrize(
    "failing",
    [lambda: request.form["missing"], lambda: request.get_json() and None, lambda: raise_(NotFound())],
    ids=["missing-form-key", "get-json-on-a-form", "raised-not-aborted"],
)
def test_werkzeugs_own_errors_in_a_handler_are_its_failure(
    counted: Any, failing: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Taken for abort(): answered 400 or 415, which some senders take as final, and its
    # traceback was not logged. Only flask.abort() chooses the status.
    app, calls = counted(lambda event: failing())
    client = app.test_client()
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        response = generic_post(client, PAYLOAD, **{"Content-Type": "text/plain"})
    assert response.status_code == 500
    assert response.get_json() == {"status": "error", "reason": "handler failed"}
    assert any(record.exc_info for record in caplog.records)
    generic_post(client, PAYLOAD)
    assert calls == ["evt_1", "evt_1"]  # released: the retry runs it


def test_an_abort_whose_response_cannot_be_read_is_done_with_the_default_body(counted: Any) -> None:
    # abort(response) was rendered outside the guard a returned value has: a 500 after the
    # handler's side effects, and they ran again on the retry.
    def broken() -> Any:
        yield b"never"
        raise RuntimeError("stream broke")

    app, calls = counted(lambda event: abort(Response(broken(), 200)))
    client = app.test_client()
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    assert calls == ["evt_1"]


def raise_(error: Exception) -> None:
    raise error


def test_a_redirect_return_is_never_answered(counted: Any) -> None:
    app, calls = counted(lambda event: redirect("/elsewhere"))
    client = app.test_client()
    for _ in range(2):
        response = generic_post(client, PAYLOAD)
        assert response.status_code == 500
        assert "Location" not in response.headers
    assert calls == ["evt_1", "evt_1"]


def test_a_huge_return_value_is_not_stored(counted: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, calls = counted(lambda event: "x" * (MAX_REPLY + 1))
    client = app.test_client()
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    assert calls == ["evt_1"]
    assert "default body" in caplog.text
    app2, _ = counted(lambda event: "x" * MAX_REPLY)
    assert len(generic_post(app2.test_client(), PAYLOAD).data) == MAX_REPLY


# Two apps sharing a store -------------------------------------------------------------------


def test_two_apps_sharing_a_store_never_answer_each_others_deliveries(tmp_path: Any) -> None:
    store = MemoryStore()
    calls: list[str] = []
    apps = []
    for name in ("shop", "billing"):
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(HOOKS_SECRET=SECRET, HOOKS_STORE=store)
        hooks = Hooks(app)
        hooks.on("*")(lambda event, name=name: calls.append(name) or {"by": name})
        apps.append(app)
    answers = [generic_post(app.test_client(), PAYLOAD).get_json() for app in apps]
    assert answers == [{"by": "shop"}, {"by": "billing"}]
    assert calls == ["shop", "billing"]


def test_namespace_setting_names_the_app_part(make_app: Callable[..., Flask]) -> None:
    one, two = Hooks(store="memory://"), Hooks(name="stripe", store="memory://")
    app = make_app(one, two, HOOKS_NAMESPACE="shop-eu", HOOKS_STRIPE_SECRET="s")
    assert (one.receiver(app).ns, two.receiver(app).ns) == ("shop-eu:hooks", "shop-eu:stripe")
    app2 = make_app(Hooks(store="memory://"))
    assert Hooks().receiver(app2).ns == "hooks_test:hooks"


# Signal subscribers that raise ---------------------------------------------------------------


@pytest.mark.parametrize("signal", sorted(signals.by_name))
def test_a_raising_subscriber_changes_no_outcome(
    make_app: Callable[..., Flask], signal: str, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = Hooks(store="memory://")
    state = {"fail": True}

    @hooks.on("resource.*")
    def handler(event: Event) -> None:
        if state["fail"]:
            raise ValueError("first attempt fails")

    app = make_app(hooks)
    client = app.test_client()

    def boom(sender: Flask, **extra: Any) -> None:
        raise RuntimeError("subscriber bug")

    with signals.by_name[signal].connected_to(boom, app), caplog.at_level(logging.ERROR):
        assert generic_post(client, PAYLOAD).status_code == 500  # handler_failed fires
        state["fail"] = False
        assert generic_post(client, PAYLOAD).status_code == 200  # released, not held for the lease
        assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
        assert generic_post(client, {"id": "evt_2", "type": "other"}).get_json() == {"status": "ignored"}
        assert generic_post(client, PAYLOAD, secret="wrong").status_code == 401


# Bad input and bad settings -----------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory://", "sqlite:///hooks.sqlite3"])
def test_an_id_with_a_lone_surrogate_is_a_400(make_app: Callable[..., Flask], store: str) -> None:
    hooks = Hooks(store=store)
    calls: list[str] = []
    hooks.on("*")(lambda event: calls.append(event.id))
    client = make_app(hooks).test_client()
    body = b'{"id": "evt-\\ud800", "type": "resource.created"}'
    for _ in range(2):
        response = generic_post(client, body)
        assert response.status_code == 400
        assert "id" in response.get_json()["reason"]
    assert generic_post(client, b'{"id": "evt-1", "type": "a\\udfff"}').status_code == 400
    assert generic_post(client, '{"id": "évt-✓", "type": "r"}'.encode()).status_code == 200
    assert calls == ["évt-✓"]


def test_an_id_or_type_with_a_control_character_is_a_400_and_writes_no_log_line_of_its_own(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Ids are quoted as they are in the app's log: a newline in one would forge a line."""
    hooks = Hooks(store="memory://")
    calls: list[str] = []

    @hooks.on("*")
    def fails(event: Any) -> None:
        calls.append(event.id)
        raise RuntimeError("boom")

    client = make_app(hooks).test_client()
    forged = "evt-1\nINFO flask_hooks: delivery evt-2 handled"
    for body in (
        {"id": forged, "type": "a.b"},
        {"id": "evt\u001b[2Jx", "type": "a.b"},
        {"id": "evt\u0085x", "type": "a.b"},
        {"id": "evt-3", "type": "a\rb"},
    ):
        response = generic_post(client, body)
        assert response.status_code == 400
        assert "control character" in response.get_json()["reason"]
    assert calls == []
    assert not any("\n" in record.getMessage() for record in caplog.records)
    # Printable, if unusual: accepted, and its handler ran (and failed).
    assert generic_post(client, {"id": "évt 4\u200b", "type": "a.b"}).status_code == 500
    assert calls == ["évt 4\u200b"]


@pytest.mark.parametrize("store", ["memory://", "sqlite:///hooks.sqlite3", "postgresql"])
def test_an_id_or_type_with_a_nul_is_a_400_in_every_store(
    make_app: Callable[..., Flask], store: str, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL's text holds no NUL: the store refused it, so every retry got a 503."""
    hooks = Hooks(store=request.getfixturevalue("pg_url") if store == "postgresql" else store)
    calls: list[str] = []
    hooks.on("*")(lambda event: calls.append(event.id))
    app = make_app(hooks)
    client = app.test_client()
    for body in (b'{"id": "evt\\u0000x", "type": "a.b"}', b'{"id": "evt-2", "type": "a\\u0000b"}'):
        for _ in range(2):
            response = generic_post(client, body)
            assert response.status_code == 400
            assert "NUL" in response.get_json()["reason"]
    assert generic_post(client, {"id": "evt-3", "type": "a.b"}).status_code == 200
    assert calls == ["evt-3"]
    assert hooks.inbox(app).get("evt\x00x") is None  # an id no store could keep: unknown


@pytest.mark.parametrize("key", ["HOOKS_DEDUPE_TTL", "HOOKS_LEASE", "HOOKS_TOLERANCE"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_seconds_are_config_errors(make_app: Callable[..., Flask], key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app(Hooks(store="memory://"), **{key: value})
    with pytest.raises(ConfigError, match=key):
        make_app(Hooks(store="memory://"), **{key: (value, 5) if key == "HOOKS_TOLERANCE" else value})


@pytest.mark.parametrize("key", ["HOOKS_DEDUPE_TTL", "HOOKS_LEASE", "HOOKS_TOLERANCE", "HOOKS_RETENTION"])
@pytest.mark.parametrize("value", [1e16, 1e308, 10**400, 10**5000], ids=["1e16", "1e308", "1e400", "1e5000"])
def test_times_past_a_century_are_config_errors(make_app: Callable[..., Flask], key: str, value: Any) -> None:
    """Finite, but past what a store can compute an expiry from (Redis: milliseconds in 64 bits)."""
    with pytest.raises(ConfigError, match=key):
        make_app(Hooks(store="memory://"), **{key: value})


@pytest.mark.parametrize("value", [sys.maxsize, 10**400, (1 << 30) + 1], ids=["maxsize", "1e400", "1GiB+1"])
def test_max_body_beyond_a_gibibyte_is_a_config_error(make_app: Callable[..., Flask], value: int) -> None:
    with pytest.raises(ConfigError, match="HOOKS_MAX_BODY"):
        make_app(Hooks(store="memory://"), HOOKS_MAX_BODY=value)


@pytest.mark.parametrize("value", [-1, 0, 1.5, math.inf])
def test_max_body_must_be_a_positive_whole_number(make_app: Callable[..., Flask], value: Any) -> None:
    with pytest.raises(ConfigError, match="HOOKS_MAX_BODY"):
        make_app(Hooks(store="memory://"), HOOKS_MAX_BODY=value)


def test_memory_store_after_a_fork_warns_once_per_process(tmp_path: Any) -> None:
    store = MemoryStore()
    store.claim("ns", "before", now=0.0, lease=1, ttl=1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker forked after the app was built
        try:
            records: list[logging.LogRecord] = []
            handler = logging.Handler()
            handler.emit = records.append  # type: ignore[method-assign]
            logging.getLogger("flask_hooks").addHandler(handler)
            for n in range(3):
                store.claim("ns", f"evt_{n}", now=0.0, lease=1, ttl=1)
            os.write(write, json.dumps([r.getMessage() for r in records]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        messages = json.loads(pipe.read() or b"[]")
    os.waitpid(pid, 0)
    assert len(messages) == 1
    assert "memory://" in messages[0] and "forked" in messages[0]


# Settings that fall back, and URLs already taken -------------------------------------------------


def test_a_second_receiver_falls_back_to_app_wide_settings_but_not_secrets(
    make_app: Callable[..., Flask],
) -> None:
    other = Hooks(name="billing")
    app = make_app(
        Hooks(),
        other,
        HOOKS_STORE="memory://",
        HOOKS_LEASE=7,
        HOOKS_BILLING_SECRET="b",
        HOOKS_BILLING_LEASE=9,
        HOOKS_DEDUPE_TTL=50,
        HOOKS_PROVIDER="generic",
    )
    receiver = other.receiver(app)
    assert isinstance(receiver.store, MemoryStore)
    assert (receiver.settings.lease, receiver.settings.dedupe_ttl) == (9, 50)
    assert receiver.settings.secrets == ("b",)
    assert receiver.settings.url == "/webhooks/billing"
    with pytest.raises(ConfigError, match="HOOKS_STRIPE_SECRET"):
        make_app(Hooks(name="stripe"), HOOKS_STORE="memory://")  # HOOKS_SECRET is never borrowed


def test_a_provider_is_never_borrowed(make_app: Callable[..., Flask]) -> None:
    other = Hooks(name="gh")
    app = make_app(Hooks(), other, HOOKS_STORE="memory://", HOOKS_PROVIDER="github", HOOKS_GH_SECRET="g")
    assert other.receiver(app).provider.name == "generic"


@pytest.mark.parametrize("existing", ["/webhooks", "/webhooks/", "/<path:anything>"])
def test_a_url_another_view_serves_is_a_config_error(existing: str, tmp_path: Any) -> None:
    app = Flask("taken", instance_path=str(tmp_path))
    app.config["HOOKS_SECRET"] = SECRET
    app.add_url_rule(existing, "legacy", lambda **kw: "legacy", methods=["POST"])
    with pytest.raises(ConfigError, match="legacy"):
        Hooks(app, store="memory://")


def test_a_get_only_view_at_the_url_is_no_conflict(tmp_path: Any) -> None:
    app = Flask("get_only", instance_path=str(tmp_path))
    app.config["HOOKS_SECRET"] = SECRET
    app.add_url_rule("/webhooks", "docs", lambda: "how to send us webhooks")
    Hooks(app, store="memory://")
    assert app.test_client().get("/webhooks").data == b"how to send us webhooks"
    assert generic_post(app.test_client(), PAYLOAD).status_code == 200


# Flask-WTF --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["csrf first", "hooks first"])
def test_flask_wtf_csrf_protect_leaves_deliveries_alone(tmp_path: Any, order: str) -> None:
    app = Flask("with_forms", instance_path=str(tmp_path))
    app.config.update(HOOKS_SECRET=SECRET, SECRET_KEY="forms", HOOKS_STORE="memory://")
    hooks, csrf = Hooks(), CSRFProtect()
    hooks.on("*")(lambda event: {"got": event.id})
    if order == "csrf first":
        csrf.init_app(app)
        hooks.init_app(app)
    else:
        hooks.init_app(app)
        csrf.init_app(app)
    app.add_url_rule("/form", "form", lambda: "posted", methods=["POST"])
    client = app.test_client()
    assert generic_post(client, PAYLOAD).get_json() == {"got": "evt_1"}
    assert generic_post(client, PAYLOAD, url="/webhooks/").get_json() == {"got": "evt_1"}
    assert client.post("/form").status_code == 400  # everything else is still protected


def test_a_delivery_racing_the_first_request_is_exempt_from_csrf(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSRFProtect after Hooks: the exemption happens at the first request; a delivery
    arriving while that runs must not meet CSRFProtect before the exemption."""
    import flask_hooks.view as view

    app = Flask("racing_forms", instance_path=str(tmp_path))
    app.config.update(HOOKS_SECRET=SECRET, SECRET_KEY="forms", HOOKS_STORE="memory://")
    Hooks(app).on("*")(lambda event: None)
    CSRFProtect(app)
    inside, delivered = threading.Event(), threading.Event()
    exempt = view.exempt_from_csrf

    def slow_exempt(app: Flask) -> None:  # the first request, caught mid-exemption
        inside.set()
        delivered.wait(10)
        exempt(app)

    monkeypatch.setattr(view, "exempt_from_csrf", slow_exempt)
    statuses: list[int] = []
    first = threading.Thread(target=lambda: app.test_client().get("/"))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(
        target=lambda: statuses.append(generic_post(app.test_client(), PAYLOAD).status_code)
    )
    second.start()
    second.join(1)  # it waits for the exemption (our hook), or it would have failed already
    delivered.set()
    first.join(10)
    second.join(10)
    assert statuses == [200]


def test_other_methods_get_a_json_405_unless_the_app_serves_them(tmp_path: Any) -> None:
    app = Flask("methods", instance_path=str(tmp_path))
    app.config["HOOKS_SECRET"] = SECRET
    app.add_url_rule("/webhooks", "docs", lambda: "how to send us webhooks")
    Hooks(app, store="memory://")
    client = app.test_client()
    assert client.get("/webhooks").data == b"how to send us webhooks"
    for method in ("PUT", "PATCH", "DELETE"):
        for path in ("/webhooks", "/webhooks/"):
            response = client.open(path, method=method)
            # Allow said POST only, though the app serves GET here (RFC 9110: every method it serves).
            allow = "GET, HEAD, OPTIONS, POST" if path == "/webhooks" else "POST"
            assert (response.status_code, response.headers["Allow"]) == (405, allow)
            assert response.get_json() == {"status": "method not allowed", "reason": "deliveries are POSTed"}
    bare = Flask("bare", instance_path=str(tmp_path))
    bare.config["HOOKS_SECRET"] = SECRET
    Hooks(bare, store="memory://")
    assert bare.test_client().get("/webhooks/").get_json()["status"] == "method not allowed"


def test_a_view_added_after_the_receiver_serves_its_methods_and_others_get_the_json_405(
    tmp_path: Any,
) -> None:
    # The receiver's rules listed GET, PUT, PATCH, DELETE and OPTIONS for its 405: a page
    # added later at GET /webhooks was never reached, and PROPFIND got werkzeug's HTML 405.
    app = Flask("later", instance_path=str(tmp_path))
    app.config["HOOKS_SECRET"] = SECRET
    Hooks(app, store="memory://")
    app.add_url_rule("/webhooks", "docs", lambda: "how to send us webhooks")
    app.add_url_rule("/webhooks", "lock", lambda: "locked", methods=["LOCK"])
    app.add_url_rule("/elsewhere", "elsewhere", lambda: "elsewhere", methods=["PUT"])
    client = app.test_client()
    assert client.get("/webhooks").data == b"how to send us webhooks"
    assert client.open("/webhooks", method="LOCK").data == b"locked"
    for method in ("PROPFIND", "FOO", "DELETE"):
        response = client.open("/webhooks", method=method)
        assert (response.status_code, response.headers["Allow"]) == (405, "GET, HEAD, LOCK, OPTIONS, POST")
        assert response.get_json() == {"status": "method not allowed", "reason": "deliveries are POSTed"}
    # A 405 or a 404 at another URL is the app's, as before.
    assert client.get("/elsewhere").mimetype == "text/html"
    assert client.open("/nowhere", method="FOO").status_code == 404


def test_a_secret_parsed_from_the_environment_as_a_number_is_a_config_error(tmp_path: Any) -> None:
    app = Flask("env_secret", instance_path=str(tmp_path))
    app.config["HOOKS_SECRET"] = 12345
    with pytest.raises(ConfigError, match="HOOKS_SECRET must be a string or a list"):
        Hooks(app, store="memory://")


def test_an_app_that_matches_hosts_receives_on_every_host(tmp_path: Any) -> None:
    # A rule without a host matches no request when the app matches hosts: every delivery was a 404.
    app = Flask("hosts", instance_path=str(tmp_path), host_matching=True, static_host="static.example")
    app.config["HOOKS_SECRET"] = SECRET
    app.add_url_rule("/webhooks", "docs", lambda: "how to send us webhooks", host="docs.example")
    hooks = Hooks(app, store="memory://")
    seen: list[str] = []
    hooks.on("*")(lambda event: seen.append(event.id))
    client = app.test_client()
    for n, host in enumerate(["api.example", "localhost", "10.0.0.7:8000"]):
        delivery = {"id": f"evt_{n}", "type": "a"}
        response = generic_post(client, delivery, **{"Host": host})
        assert (response.status_code, response.get_json()) == (200, {"status": "received"}), host
        assert generic_post(client, delivery, url="/webhooks/", **{"Host": host}).status_code == 200
        assert client.get("/webhooks", headers={"Host": host}).status_code == 405
    assert seen == ["evt_0", "evt_1", "evt_2"]
    assert client.get("/webhooks", headers={"Host": "docs.example"}).data == b"how to send us webhooks"
    # url_for the receiver needed a host its rule takes (a BuildError in handlers and views).
    with app.test_request_context("/", headers={"Host": "api.example"}):
        assert url_for("flask_hooks.hooks") == "/webhooks"
        assert url_for("flask_hooks.hooks", _external=True) == "http://api.example/webhooks"
