"""The inbox at its edges: a replay of some handlers, forgetting a running one, retention, odd input."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks, InFlight, Retry, StoreUnavailable
from tests.conftest import generic_post
from tests.helpers import ManualClock

PAYLOAD = {"id": "evt_1", "type": "payment.succeeded", "amount": 100}
DAY = 86400.0


@pytest.fixture(params=["memory://", "sqlite:///hooks.sqlite3", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.param)


class Shop:
    """Two handlers on one type; ``billing.invoice`` fails until fixed."""

    def __init__(self, make_app: Callable[..., Flask], store: str, clock: ManualClock) -> None:
        self.hooks = Hooks(store=store, clock=clock, lease=30)
        self.runs: list[tuple[str, bool]] = []
        self.fixed = False
        self.hooks.on("payment", name="ledger.book")(self._book)
        self.hooks.on("payment.succeeded", name="billing.invoice")(self._invoice)
        self.app = make_app(self.hooks)
        self.inbox = self.hooks.inbox(self.app)
        self.client = self.app.test_client()

    def _book(self, event: Event) -> None:
        self.runs.append(("ledger.book", event.replayed))

    def _invoice(self, event: Event) -> None:
        self.runs.append(("billing.invoice", event.replayed))
        if not self.fixed:
            raise RuntimeError("invoice bug")


@pytest.fixture
def shop(make_app: Callable[..., Flask], store_url: str) -> Shop:
    return Shop(make_app, store_url, ManualClock())


def test_replaying_one_handler_leaves_the_other_owed(shop: Shop) -> None:
    generic_post(shop.client, PAYLOAD)  # ledger.book succeeds, billing.invoice fails
    after = shop.inbox.replay("evt_1", handlers=["ledger.book"])
    assert after.status == "failed"
    assert after.handlers == {"ledger.book": "succeeded", "billing.invoice": "failed"}
    assert shop.runs == [("ledger.book", False), ("billing.invoice", False), ("ledger.book", True)]
    assert [a.outcome for a in after.attempts] == ["error", "replayed"]
    # Still owed: the sender's retry runs billing.invoice (and only it) once fixed.
    shop.fixed = True
    assert generic_post(shop.client, PAYLOAD).get_json() == {"status": "received"}
    assert shop.runs[3:] == [("billing.invoice", False)]
    delivery = shop.inbox.get("evt_1")
    assert delivery is not None and delivery.status == "received"


def test_replaying_the_owed_handler_completes(shop: Shop) -> None:
    generic_post(shop.client, PAYLOAD)
    shop.fixed = True
    after = shop.inbox.replay("evt_1", handlers=["billing.invoice"])
    assert after.status == "received"
    assert shop.runs[2:] == [("billing.invoice", True)]
    assert generic_post(shop.client, PAYLOAD).get_json() == {"status": "duplicate"}


def test_rerunning_one_handler_of_a_completed_delivery_keeps_it_completed(shop: Shop) -> None:
    shop.fixed = True
    generic_post(shop.client, PAYLOAD)
    after = shop.inbox.replay("evt_1", handlers=["ledger.book"])
    assert after.status == "received"
    assert after.handlers == {"ledger.book": "succeeded", "billing.invoice": "succeeded"}
    assert shop.runs[2:] == [("ledger.book", True)]
    assert generic_post(shop.client, PAYLOAD).get_json() == {"status": "duplicate"}


def test_replay_refuses_an_empty_or_string_handler_list(shop: Shop) -> None:
    generic_post(shop.client, PAYLOAD)
    with pytest.raises(ValueError, match="at least one handler"):
        shop.inbox.replay("evt_1", handlers=[])
    with pytest.raises(TypeError, match="not one string"):
        shop.inbox.replay("evt_1", handlers="ledger.book")
    delivery = shop.inbox.get("evt_1")
    assert delivery is not None and delivery.status == "failed"  # nothing changed
    assert len(shop.runs) == 2


def test_forgetting_a_delivery_whose_handler_runs_is_refused(make_app: Callable[..., Flask]) -> None:
    clock = ManualClock()
    hooks = Hooks(store="memory://", clock=clock, lease=30)
    seen: list[Any] = []

    @hooks.on("*")
    def handler(event: Event) -> None:
        with pytest.raises(InFlight):
            hooks.inbox(app).forget(event.id)  # an operator, while the handler runs
        seen.append(event.id)

    app = make_app(hooks)
    client = app.test_client()
    assert generic_post(client, PAYLOAD).status_code == 200
    assert seen == ["evt_1"]
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}  # ran once
    assert hooks.inbox(app).forget("evt_1") is True  # done: forgetting is allowed


def test_a_delivery_past_its_retention_is_gone_before_the_purge(
    make_app: Callable[..., Flask], store_url: str
) -> None:
    if store_url.startswith("redis"):
        pytest.skip("Redis expires the keys itself, by its own clock")
    clock = ManualClock()
    hooks = Hooks(store=store_url, clock=clock, retention=7 * DAY, dedupe_ttl=DAY)
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    generic_post(app.test_client(), PAYLOAD)
    inbox = hooks.inbox(app)
    clock.advance(7 * DAY - 60)
    assert inbox.get("evt_1") is not None and [d.id for d in inbox.query()] == ["evt_1"]
    clock.advance(120)  # nothing wrote since, so no sweep ran
    assert inbox.get("evt_1") is None
    assert inbox.query() == []
    with pytest.raises(LookupError):
        inbox.replay("evt_1")


@pytest.mark.parametrize("id", ["evt-\ud800", "\udcff"])
def test_ids_no_store_could_write_are_unknown(shop: Shop, id: str) -> None:
    generic_post(shop.client, PAYLOAD)
    assert shop.inbox.get(id) is None
    with pytest.raises(LookupError):
        shop.inbox.replay(id)
    assert shop.inbox.forget(id) is False
    assert shop.inbox.query(type=id) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": -1}, {"limit": 2.5}, {"since": math.nan}, {"until": math.inf}],
)
def test_query_refuses_odd_arguments(shop: Shop, kwargs: dict[str, Any]) -> None:
    generic_post(shop.client, PAYLOAD)
    with pytest.raises(ValueError):
        shop.inbox.query(**kwargs)


@pytest.mark.parametrize("older_than", [-5, math.nan, math.inf])
def test_purge_refuses_odd_ages(shop: Shop, older_than: float) -> None:
    generic_post(shop.client, PAYLOAD)
    with pytest.raises(ValueError, match="older_than"):
        shop.inbox.purge(older_than=older_than)
    assert shop.inbox.get("evt_1") is not None


@pytest.mark.parametrize("older_than", ["30d", None, True])
def test_purge_says_its_age_is_seconds(shop: Shop, older_than: Any) -> None:
    # "30d", the CLI's spelling, was a bare TypeError comparing an int with a str.
    generic_post(shop.client, PAYLOAD)
    with pytest.raises(TypeError, match=r"older_than is a number of seconds \(30 days: 30 \* 86400\)"):
        shop.inbox.purge(older_than=older_than)
    assert shop.inbox.get("evt_1") is not None


def test_a_credential_quoted_by_a_handler_s_exception_is_blanked(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "narada-body-secret-456"
    hooks = Hooks(provider="narada", secret=secret, store="memory://")

    @hooks.on("*")
    def handler(event: Event) -> None:
        raise KeyError(event.payload["secret"])  # a bug that quotes what it was given

    app = make_app(hooks)
    payload = {"requestId": "r1", "secret": secret, "status": "completed"}
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        response = app.test_client().post("/webhooks", json=payload)
    assert response.status_code == 500
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records if "handler" in r.getMessage())
    inbox = hooks.inbox(app)
    delivery = inbox.get("r1:completed")
    assert delivery is not None
    [attempt] = delivery.attempts
    assert "KeyError" in attempt.error and "[redacted]" in attempt.error
    assert secret not in attempt.error
    [entry] = hooks.receiver(app).store.deliveries(hooks.receiver(app).ns)
    assert secret not in entry.error


@pytest.mark.parametrize(
    ("header", "value", "hidden"),
    [
        ("Authorization", "Bearer auth-token-789", "auth-token-789"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("Cookie", "theme=light; session=cookie-value-321", "cookie-value-321"),
    ],
)
def test_a_credential_header_quoted_by_a_handler_s_exception_is_blanked(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, header: str, value: str, hidden: str
) -> None:
    """The inbox shows such headers as ``[redacted]``: the traceback beside them must not
    show them either, whole or the credential alone (after ``Bearer``, a cookie's value)."""
    hooks = Hooks(store="memory://")

    @hooks.on("*")
    def handler(event: Event) -> None:
        given = event.headers[header]
        raise ValueError(f"refused {given!r}, credential {given.partition(' ')[2] or given}")

    app = make_app(hooks)
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        client = app.test_client(use_cookies=False)  # else it sends its own jar's Cookie header
        response = generic_post(client, {"id": "evt_h", "type": "a.b"}, **{header: value})
    assert response.status_code == 500
    assert caplog.records and all(hidden not in r.getMessage() for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records if "handler" in r.getMessage())
    delivery = hooks.inbox(app).get("evt_h")
    assert delivery is not None and dict(delivery.headers)[header] == "[redacted]"
    [attempt] = delivery.attempts
    assert "ValueError" in attempt.error and "[redacted]" in attempt.error
    assert hidden not in attempt.error
    [entry] = hooks.receiver(app).store.deliveries(hooks.receiver(app).ns)
    assert hidden not in entry.error


class StaleReads:
    """A store whose ``get`` returns what it read first: a replay deciding on an old snapshot."""

    def __init__(self, store: Any) -> None:
        self.store, self.snapshots = store, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get(self, ns: str, id: str) -> Any:
        return self.snapshots.setdefault((ns, id), self.store.get(ns, id))


@pytest.mark.parametrize("handlers", [None, ["ledger.book"]])
def test_a_retry_completing_before_the_replay_claims_runs_nothing_twice(
    shop: Shop, handlers: list[str] | None
) -> None:
    generic_post(shop.client, PAYLOAD)  # billing.invoice fails
    receiver = shop.hooks.receiver(shop.app)
    stale = StaleReads(receiver.store)
    stale.get(receiver.ns, "evt_1")  # the replay reads "failed"...
    shop.fixed = True
    assert generic_post(shop.client, PAYLOAD).get_json() == {"status": "received"}  # ...a retry completes
    receiver.store = stale  # type: ignore[misc]
    try:
        shop.inbox.replay("evt_1", handlers=handlers)
    finally:
        receiver.store = stale.store  # type: ignore[misc]
    invoices = [run for run in shop.runs if run[0] == "billing.invoice"]
    assert invoices == [("billing.invoice", False), ("billing.invoice", False)]  # never a third
    assert generic_post(shop.client, PAYLOAD).get_json() == {"status": "duplicate"}
    delivery = shop.inbox.get("evt_1")
    assert delivery is not None and delivery.status == "received"


def test_rerunning_a_handler_keeps_the_reply_duplicates_get(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")
    hooks.on("order", name="first")(lambda event: None)
    hooks.on("order", name="second")(lambda event: {"answer": 42})
    app = make_app(hooks)
    client = app.test_client()
    payload = {"id": "ord_1", "type": "order"}
    assert generic_post(client, payload).get_json() == {"answer": 42}
    hooks.inbox(app).replay("ord_1", handlers=["first"])
    assert generic_post(client, payload).get_json() == {"answer": 42}


def test_a_failing_rerun_of_a_completed_delivery_leaves_the_others_done(
    make_app: Callable[..., Flask], store_url: str
) -> None:
    hooks = Hooks(store=store_url)
    runs: list[str] = []
    broken = {"book": False}

    def book(event: Event) -> None:
        runs.append("book")
        if broken["book"]:
            raise RuntimeError("book bug")

    hooks.on("payment", name="ledger.book")(book)
    hooks.on("payment", name="billing.invoice")(lambda event: runs.append("invoice"))
    app = make_app(hooks)
    client = app.test_client()
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}
    broken["book"] = True
    after = hooks.inbox(app).replay("evt_1", handlers=["ledger.book"])
    assert after.status == "failed"
    assert after.handlers == {"ledger.book": "failed", "billing.invoice": "succeeded"}
    broken["book"] = False
    assert generic_post(client, PAYLOAD).get_json() == {"status": "received"}  # the sender's retry
    assert runs == ["book", "invoice", "book", "book"]  # invoice never twice


def test_a_handler_s_retry_is_shown_as_its_reason_not_a_traceback(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")

    @hooks.on("payment.succeeded")
    def later(event: Event) -> None:
        raise Retry("bank API down", after=30)

    app = make_app(hooks)
    assert generic_post(app.test_client(), PAYLOAD).status_code == 503
    [attempt] = hooks.inbox(app).get("evt_1").attempts
    assert attempt.error == "Retry: bank API down (retry asked after 30 s)"
    assert attempt.failed.endswith("later")
    shown = app.test_cli_runner().invoke(args=["hooks", "show", "evt_1"]).output
    assert "Traceback" not in shown and "flask_hooks.core" not in shown
    assert "Retry: bank API down" in shown


def test_replay_reads_handler_names_given_as_a_generator_once(shop: Shop) -> None:
    """The names were read twice (checked, then chosen): the second read found none,
    so nothing ran and a ``replayed`` attempt was logged all the same."""
    generic_post(shop.client, PAYLOAD)  # billing.invoice fails
    shop.fixed = True
    after = shop.inbox.replay("evt_1", handlers=(name for name in ["billing.invoice"]))
    assert after.status == "received"
    assert shop.runs[-1] == ("billing.invoice", True)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
@pytest.mark.parametrize("damage", ["headers", "attempts"])
def test_a_damaged_kept_delivery_is_a_store_error_not_a_crash(
    make_app: Callable[..., Flask],
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    store: str,
    damage: str,
) -> None:
    """A record no version writes (damaged, or from a newer version after a rollback): the
    inbox raises StoreUnavailable with an error log, so the CLI and the dashboard answer as for
    a store that is down (a 503), not with a JSONDecodeError or a TypeError (a 500)."""
    url = str(request.getfixturevalue("redis_url")) if store == "redis" else "sqlite:///hooks.sqlite3"
    hooks = Hooks(store=url)
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    assert generic_post(app.test_client(), PAYLOAD).status_code == 200
    if store == "sqlite":
        import sqlite3

        table = "hooks_kept" if damage == "headers" else "hooks_deliveries"
        with sqlite3.connect(f"{app.instance_path}/hooks.sqlite3") as db:
            db.execute(f"UPDATE {table} SET {damage} = ?", ('{"v": 9, "' + damage + '": 5}',))
    else:
        import redis

        client = redis.Redis.from_url(url)
        record, _, attempts = hooks.receiver(app).store._keys(hooks.receiver(app).ns, "evt_1")  # type: ignore[attr-defined]
        if damage == "headers":
            client.hset(record, "headers", "not json")
        else:
            client.delete(attempts)
            client.rpush(attempts, b"[not json")
    inbox = hooks.inbox(app)
    with caplog.at_level(logging.ERROR, logger="flask_hooks"):
        for read in (lambda: inbox.get("evt_1"), lambda: inbox.query()):
            with pytest.raises(StoreUnavailable):
                read()
    assert f"stored {damage}" in caplog.text or "stored log line" in caplog.text
