"""The claim state machine seen from the sender: crashes, partial failures, rotation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.providers import MAX_DEPTH
from tests.conftest import SECRET, generic_post
from tests.helpers import Crash, ManualClock

PAYLOAD = {"id": "evt_1", "type": "payment.succeeded", "data": {"amount": 100}}


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'hooks.sqlite3'}"


def test_crash_mid_handler_holds_the_claim_until_the_lease_expires(
    make_app: Callable[..., Flask], store_url: str
) -> None:
    clock = ManualClock()
    hooks = Hooks(store=store_url, clock=clock, lease=60)
    runs: list[str] = []

    @hooks.on("payment.succeeded")
    def charge(event: Event) -> None:
        runs.append(event.id)
        if len(runs) == 1:
            raise Crash()  # the worker dies: no release, no completion

    app = make_app(hooks)
    client = app.test_client()
    with pytest.raises(Crash):
        generic_post(client, PAYLOAD)

    clock.advance(30)
    busy = generic_post(client, PAYLOAD)
    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "30"
    assert runs == ["evt_1"]

    clock.advance(31)  # lease over: the sender's retry runs the handler again
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    assert runs == ["evt_1", "evt_1"]


def test_retry_runs_only_the_handlers_that_failed(make_app: Callable[..., Flask], store_url: str) -> None:
    hooks = Hooks(store=store_url)
    calls: list[str] = []
    fail = {"email": True}

    @hooks.on("payment")
    def ledger(event: Event) -> dict[str, str]:
        calls.append("ledger")
        return {"booked": event.id}

    @hooks.on("payment.*")
    def email(event: Event) -> None:
        calls.append("email")
        if fail["email"]:
            raise RuntimeError("smtp down")

    @hooks.on("*")
    def audit(event: Event) -> None:
        calls.append("audit")

    client = make_app(hooks).test_client()
    assert generic_post(client, PAYLOAD).status_code == 500
    assert calls == ["ledger", "email"]

    fail["email"] = False
    response = generic_post(client, PAYLOAD)
    assert response.status_code == 200
    # ledger succeeded before and is not run again; its return value is still the answer.
    assert calls == ["ledger", "email", "email", "audit"]
    assert response.get_json() == {"booked": "evt_1"}
    assert generic_post(client, PAYLOAD).get_json() == {"booked": "evt_1"}


def test_crash_after_first_handler_keeps_its_success(make_app: Callable[..., Flask], store_url: str) -> None:
    clock = ManualClock()
    hooks = Hooks(store=store_url, clock=clock, lease=10)
    calls: list[str] = []
    crash = {"on": True}

    @hooks.on("payment.succeeded")
    def first(event: Event) -> None:
        calls.append("first")

    @hooks.on("payment.succeeded")
    def second(event: Event) -> None:
        calls.append("second")
        if crash["on"]:
            raise Crash()

    client = make_app(hooks).test_client()
    with pytest.raises(Crash):
        generic_post(client, PAYLOAD)
    crash["on"] = False
    clock.advance(11)
    assert generic_post(client, PAYLOAD).status_code == 200
    assert calls == ["first", "second", "second"]


def test_done_records_expire_after_the_dedupe_ttl(make_app: Callable[..., Flask], store_url: str) -> None:
    clock = ManualClock()
    hooks = Hooks(store=store_url, clock=clock, dedupe_ttl=3600)
    calls: list[str] = []
    hooks.on("*")(lambda e: calls.append(e.id))
    client = make_app(hooks).test_client()
    generic_post(client, PAYLOAD)
    clock.advance(3599)
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    clock.advance(2)
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}
    assert calls == ["evt_1", "evt_1"]


def test_rotation_accepts_old_secret_and_reports_it(make_app: Callable[..., Flask], store_url: str) -> None:
    hooks = Hooks(store=store_url, secret=["new-secret", "old-secret"])
    seen: list[int] = []
    hooks.on("*")(lambda e: seen.append(e.secret_index))
    app = make_app(hooks)
    client = app.test_client()
    assert generic_post(client, {**PAYLOAD, "id": "a"}, secret="new-secret").status_code == 200
    assert generic_post(client, {**PAYLOAD, "id": "b"}, secret="old-secret").status_code == 200
    assert generic_post(client, {**PAYLOAD, "id": "c"}, secret="unknown").status_code == 401
    assert seen == [0, 1]
    log = hooks.receiver(app).store.deliveries(hooks.receiver(app).ns)
    assert [(e.id, e.status, e.secret_index) for e in log] == [
        (None, "rejected", None),
        ("b", "received", 1),
        ("a", "received", 0),
    ]


def test_receivers_have_their_own_dedupe_namespace(make_app: Callable[..., Flask], store_url: str) -> None:
    one = Hooks(store=store_url)
    two = Hooks(name="billing", store=store_url)
    calls: list[str] = []
    one.on("*")(lambda e: calls.append("one"))
    two.on("*")(lambda e: calls.append("two"))
    client = make_app(one, two, HOOKS_BILLING_SECRET=SECRET).test_client()
    assert generic_post(client, PAYLOAD).status_code == 200
    assert generic_post(client, PAYLOAD, url="/webhooks/billing").status_code == 200
    assert calls == ["one", "two"]


def test_delivery_log_records_failures_and_handlers(make_app: Callable[..., Flask], store_url: str) -> None:
    hooks = Hooks(store=store_url)
    state = {"fail": True}

    @hooks.on("*")
    def handler(event: Event) -> None:
        if state["fail"]:
            raise ValueError("boom")

    app = make_app(hooks)
    client = app.test_client()
    generic_post(client, PAYLOAD)
    state["fail"] = False
    generic_post(client, PAYLOAD)
    generic_post(client, PAYLOAD)
    store, ns = hooks.receiver(app).store, hooks.receiver(app).ns
    entries = store.deliveries(ns)
    assert [(e.status, e.code) for e in entries] == [("duplicate", 200), ("received", 200), ("error", 500)]
    assert entries[1].handlers == ("tests.test_dedupe.test_delivery_log_records_failures_and_handlers."
                                   "<locals>.handler",)
    assert [e.status for e in store.deliveries(ns, status="error")] == ["error"]
    assert len(store.deliveries(ns, limit=1)) == 1


def test_a_handler_outliving_its_lease_does_not_acknowledge(
    make_app: Callable[..., Flask], store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The slow worker's completion is refused; the sender is told to come back. Logged as
    an error: the attempt that took the delivery over may have run the handler too."""
    clock = ManualClock()
    hooks = Hooks(store=store_url, clock=clock, lease=10)
    app = make_app(hooks)
    store = hooks.receiver(app).store
    calls: list[str] = []

    @hooks.on("payment.succeeded")
    def slow(event: Event) -> None:
        calls.append("slow")
        clock.advance(11)  # the lease runs out while we work...
        taken = store.claim(hooks.receiver(app).ns, event.id, now=clock(), lease=10, ttl=86400)
        assert taken.state == "new"  # ...and another worker takes the delivery over

    with caplog.at_level(logging.ERROR, "flask_hooks"):
        response = generic_post(app.test_client(), PAYLOAD)
    assert response.status_code == 409
    assert "Retry-After" in response.headers
    assert calls == ["slow"]
    assert "lease lost on hooks evt_1: another attempt claimed it" in caplog.text


def test_a_handler_changing_the_payload_changes_it_for_no_other(
    make_app: Callable[..., Flask], store_url: str
) -> None:
    """The second handler saw the first one's change on the first attempt, and the
    payload as sent on the retry (the first is not run again): two different inputs."""
    hooks = Hooks(store=store_url)
    seen: list[Any] = []
    fail = {"email": True}

    @hooks.on("payment")
    def ledger(event: Event) -> None:
        event.payload["data"]["amount"] = 0
        event.payload["booked"] = True

    @hooks.on("payment.*")
    def email(event: Event) -> None:
        seen.append(event.payload)
        if fail["email"]:
            raise RuntimeError("smtp down")

    @hooks.on("*")
    def audit(event: Event) -> None:
        seen.append(event.payload)

    client = make_app(hooks).test_client()
    assert generic_post(client, PAYLOAD).status_code == 500
    fail["email"] = False
    assert generic_post(client, PAYLOAD).status_code == 200
    assert seen == [PAYLOAD, PAYLOAD, PAYLOAD]


def deep(id: str, depth: int) -> bytes:
    """A body whose nesting is ``depth`` deep, the envelope's object included."""
    arrays = depth - 1
    return f'{{"id": "{id}", "type": "deep", "x": {"[" * arrays}{"]" * arrays}}}'.encode()


def test_a_deeply_nested_payload_reaches_every_handler(make_app: Callable[..., Flask]) -> None:
    """Each handler's own payload is parsed again, not copied: ``copy.deepcopy`` raised a
    RecursionError (a 500, the claim held) on nesting the JSON parser takes."""
    hooks = Hooks(store="memory://")
    seen: list[str] = []
    hooks.on("deep", name="first")(lambda event: seen.append("first"))
    hooks.on("deep", name="second")(lambda event: seen.append("second"))
    client = make_app(hooks).test_client()
    assert generic_post(client, deep("evt_deep", MAX_DEPTH)).get_json() == {"status": "received"}
    assert seen == ["first", "second"]


def test_nesting_beyond_the_limit_is_a_400_before_any_handler_runs(make_app: Callable[..., Flask]) -> None:
    """Python's parser gives up at a depth that depends on the stack already used, so the
    second handler's parse, deeper in the stack than the view's, failed where the first had
    passed: a 500 after the first handler ran, on every retry (depths 936-941 here)."""
    hooks = Hooks(store="memory://")
    seen: list[str] = []
    hooks.on("deep", name="first")(lambda event: seen.append(event.id))
    hooks.on("deep", name="second")(lambda event: seen.append(event.id))
    client = make_app(hooks).test_client()
    for depth in [MAX_DEPTH + 1, 700, *range(900, 1000), 5000]:
        response = generic_post(client, deep(f"evt_{depth}", depth))
        assert response.status_code == 400, depth
        assert response.get_json()["reason"] == f"body is nested too deeply (over {MAX_DEPTH} levels)"
    assert seen == []


def test_a_store_that_fails_is_logged_with_its_own_error_in_the_message(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """An operator reads what to fix (Redis out of memory, a full disk) in the line itself."""
    from flask_hooks import StoreUnavailable
    from flask_hooks.stores import MemoryStore

    class Full(MemoryStore):
        def claim(self, *args: Any, **kwargs: Any) -> Any:
            try:
                raise OSError("No space left on device\n(second line)")
            except OSError as exc:
                raise StoreUnavailable() from exc

    app = make_app(Hooks(store=Full()))
    with caplog.at_level(logging.WARNING, "flask_hooks"):
        assert generic_post(app.test_client(), PAYLOAD).status_code == 503
    [record] = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert record.getMessage() == "dedupe store unavailable for hooks: OSError: No space left on device"
    assert record.exc_info is not None  # the traceback still goes to error trackers
