"""The delivery inbox through a real app: kept, shown, replayed after a fix."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

import pytest
from flask import Flask, g, request, url_for

from flask_hooks import ConfigError, Event, Headers, Hooks, InFlight, LeaseLost, signals
from flask_hooks.core.providers import Parsed, Provider, Verified
from flask_hooks.core.providers.slack import Slack
from flask_hooks.dashboard.text import payload_text
from flask_hooks.inbox import hidden
from flask_hooks.stores import MemoryStore
from tests.conftest import SECRET, generic_post, generic_signature
from tests.helpers import ManualClock

PAYLOAD = {"id": "evt_1", "type": "payment.succeeded", "amount": 100}


@pytest.fixture(params=["memory://", "sqlite:///hooks.sqlite3"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Bug:
    """A handler with a bug that the operator fixes."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, event: Event) -> None:
        self.calls.append((event.id, event.replayed))
        if not self.fixed:
            raise KeyError("customer")


@pytest.fixture
def shop(make_app: Callable[..., Flask], store_url: str) -> tuple[Flask, Hooks, Bug, list[str]]:
    hooks = Hooks(store=store_url)
    bug = Bug()
    booked: list[str] = []
    hooks.on("payment", name="ledger.book")(lambda event: booked.append(event.id))
    hooks.on("payment.succeeded", name="billing.invoice")(bug)
    return make_app(hooks), hooks, bug, booked


def test_a_failed_delivery_is_kept_with_its_error(shop: Any) -> None:
    app, hooks, _, _ = shop
    credentials = {"Authorization": "Bearer s3cr3t", "Proxy-Authorization": "Basic eA=="}
    response = generic_post(app.test_client(), PAYLOAD, **credentials)
    assert response.status_code == 500
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None
    assert delivery.status == "failed"
    assert delivery.payload == PAYLOAD
    assert delivery.handlers == {"ledger.book": "succeeded", "billing.invoice": "failed"}
    headers = Headers(delivery.headers)  # case-insensitive
    assert headers["Authorization"] == headers["Proxy-Authorization"] == "[redacted]"
    assert headers["X-Webhook-Signature"]  # kept: not a credential
    assert "s3cr3t" not in repr(delivery.headers)
    [attempt] = delivery.attempts
    assert (attempt.outcome, attempt.code, attempt.failed) == ("error", 500, "billing.invoice")
    assert "KeyError: 'customer'" in attempt.error and "Traceback" in attempt.error
    assert "customer" not in response.get_data(as_text=True)  # never sent to the sender


def test_replay_after_the_fix_runs_only_what_failed(shop: Any) -> None:
    app, hooks, bug, booked = shop
    generic_post(app.test_client(), PAYLOAD)
    bug.fixed = True
    replayed: list[dict[str, Any]] = []
    with signals.delivery_replayed.connected_to(lambda _s, **kw: replayed.append(kw), app):
        after = hooks.inbox(app).replay("evt_1")
    assert after.status == "received"
    assert after.handlers == {"ledger.book": "succeeded", "billing.invoice": "succeeded"}
    assert booked == ["evt_1"]
    assert bug.calls == [("evt_1", False), ("evt_1", True)]
    assert [a.outcome for a in after.attempts] == ["error", "replayed"]
    assert [(kw["receiver"], kw["event"].replayed, kw["outcome"]) for kw in replayed] == [
        ("hooks", True, "received")
    ]
    # The sender's own retry afterwards is a duplicate: nothing runs again.
    assert generic_post(app.test_client(), PAYLOAD).get_json() == {"status": "duplicate"}
    assert booked == ["evt_1"] and len(bug.calls) == 2


def test_replay_of_named_handlers_reruns_exactly_those(shop: Any) -> None:
    app, hooks, bug, booked = shop
    bug.fixed = True
    generic_post(app.test_client(), PAYLOAD)
    hooks.inbox(app).replay("evt_1", handlers=["ledger.book"])
    assert booked == ["evt_1", "evt_1"]
    assert len(bug.calls) == 1
    with pytest.raises(ValueError, match="no handler 'nope'"):
        hooks.inbox(app).replay("evt_1", handlers=["nope"])


def test_replay_of_unknown_and_in_flight_deliveries(make_app: Callable[..., Flask]) -> None:
    store, clock = MemoryStore(), ManualClock()
    hooks = Hooks(store=store, clock=clock)
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    with pytest.raises(LookupError):
        hooks.inbox(app).replay("never")
    generic_post(app.test_client(), PAYLOAD)
    # A replay of one handler holds it (a completed delivery is reopened only to re-run some).
    claim = store.reopen(hooks.receiver(app).ns, "evt_1", now=clock(), lease=60, rerun={"any"})
    assert claim.state == "new"
    with pytest.raises(InFlight):
        hooks.inbox(app).replay("evt_1")


def test_a_replay_racing_a_retry_never_runs_a_handler_twice(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")
    inside, release = threading.Event(), threading.Event()
    runs: list[bool] = []

    @hooks.on("*")
    def slow(event: Event) -> None:
        runs.append(event.replayed)
        if event.replayed:
            inside.set()
            assert release.wait(10)
        else:
            raise RuntimeError("first attempt fails")

    app = make_app(hooks)
    generic_post(app.test_client(), PAYLOAD)
    with ThreadPoolExecutor(1) as pool:
        replay = pool.submit(hooks.inbox(app).replay, "evt_1")
        assert inside.wait(10)
        retry = generic_post(app.test_client(), PAYLOAD)  # the sender retries meanwhile
        release.set()
        assert replay.result().status == "received"
    assert retry.status_code == 409
    assert runs == [False, True]


def test_forget_and_purge(shop: Any) -> None:
    app, hooks, bug, booked = shop
    bug.fixed = True
    client = app.test_client()
    generic_post(client, PAYLOAD)
    generic_post(client, {**PAYLOAD, "id": "evt_2"})
    inbox = hooks.inbox(app)
    assert inbox.forget("evt_1") is True
    assert inbox.get("evt_1") is None
    generic_post(client, PAYLOAD)  # the next redelivery is processed afresh
    assert booked == ["evt_1", "evt_2", "evt_1"]
    assert inbox.purge(older_than=3600) == 0
    assert inbox.purge(older_than=0) == 2
    with pytest.raises(ValueError, match="older_than"):
        inbox.purge(older_than=-1)
    assert inbox.query() == []


def test_query_filters(shop: Any) -> None:
    app, hooks, bug, _ = shop
    client = app.test_client()
    generic_post(client, PAYLOAD)  # fails
    bug.fixed = True
    generic_post(client, {**PAYLOAD, "id": "evt_2"})
    generic_post(client, {"id": "evt_3", "type": "payment.refunded"})
    generic_post(client, {"id": "evt_4", "type": "other.thing"})
    inbox = hooks.inbox(app)
    assert {d.id for d in inbox.query()} == {"evt_1", "evt_2", "evt_3", "evt_4"}
    assert [d.id for d in inbox.query(status="failed")] == ["evt_1"]
    assert [d.id for d in inbox.query(status="ignored")] == ["evt_4"]
    assert {d.id for d in inbox.query(type="payment.*")} == {"evt_1", "evt_2", "evt_3"}
    with pytest.raises(ValueError, match="status must be one of"):
        inbox.query(status="weird")


def test_rejected_requests_keep_metadata_and_an_escaped_excerpt_only(shop: Any) -> None:
    app, hooks, _, _ = shop
    body = b'{"id": "evt_x", "type": "payment.succeeded", "note": "<script>\x00"}' + b"x" * 500
    generic_post(app.test_client(), body, secret="forged")
    assert hooks.inbox(app).get("evt_x") is None
    receiver = hooks.receiver(app)
    [line] = receiver.store.deliveries(receiver.ns)
    assert (line.status, line.code) == ("rejected", 401)
    assert line.excerpt.startswith('{"id": "evt_x"') and line.excerpt.endswith("...")
    assert "\\x00" in line.excerpt and len(line.excerpt) < 300


def test_retention(make_app: Callable[..., Flask]) -> None:
    off = Hooks(store="memory://", retention=0)
    off.on("*")(lambda event: None)
    app = make_app(off)
    generic_post(app.test_client(), PAYLOAD)
    assert off.inbox(app).get("evt_1") is None
    with pytest.raises(ConfigError, match="shorter than HOOKS_DEDUPE_TTL"):
        make_app(Hooks(store="memory://"), HOOKS_RETENTION=60, HOOKS_DEDUPE_TTL=120)
    long = Hooks(store="memory://", dedupe_ttl=30 * 86400)
    assert long.receiver(make_app(long)).settings.retention == 30 * 86400


def test_provider_credentials_are_never_stored_or_shown(make_app: Callable[..., Flask]) -> None:
    from flask_hooks.providers import Narada

    hooks = Hooks(store="memory://", provider=Narada(token="tok-123", secret="sec-456", header="X-Api-Key"))
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    body = b'{"requestId": "r1", "status": "success", "secret": "sec-456", "data": {"secret": "sec-456"}}'
    response = app.test_client().post(
        "/webhooks", data=body, headers={"X-Api-Key": "Bearer tok-123", "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    [delivery] = hooks.inbox(app).query()
    assert delivery.body == body  # kept exactly, for the replay
    assert "tok-123" not in repr(delivery.headers)
    shown = delivery.shown_payload()
    assert shown["secret"] == shown["data"]["secret"] == "[redacted]"


#: Headers senders authenticate with, by name only: none was redacted.
CUSTOM_CREDENTIALS = {
    "X-Api-Key": "key-1",
    "api-key": "key-2",
    "X-Auth-Token": "key-3",
    "X-ACCESS-TOKEN": "key-4",
    "X-Gitlab-Token": "key-5",
    "X-Webhook-Secret": "key-6",
    "X-Hub-Secret": "key-7",
    "X-Session-Id": "key-8",
    "X-Client-Password": "key-9",
    "X-Shared-Key": "key-10",
    "X-Access-Key": "key-11",
    "Cf-Access-Jwt-Assertion": "key-12",  # identity proxies' bearer assertions
    "X-Goog-Iap-Jwt-Assertion": "key-13",
}


def test_headers_named_like_credentials_are_never_stored_or_shown(
    make_app: Callable[..., Flask], store_url: str
) -> None:
    hooks = Hooks(store=store_url)
    hooks.on("*")(lambda event: {}[event.headers["X-Api-Key"] + " " + event.headers["X-Gitlab-Token"]])
    app = make_app(hooks)
    others = {
        "X-Request-Id": "req-1",
        "X-Idempotency-Key": "idem-1",
        "X-Event-Key": "repo:push",
        "X-Hub-Signature-256": "sha256=ab",
    }
    assert generic_post(app.test_client(), PAYLOAD, **CUSTOM_CREDENTIALS, **others).status_code == 500
    receiver = hooks.receiver(app)
    with app.app_context():
        stored = receiver.store.get(receiver.ns, "evt_1")
    assert stored is not None
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None
    for kept in (Headers(stored.headers), Headers(delivery.headers)):  # what is kept, what is shown
        assert [kept[name] for name in CUSTOM_CREDENTIALS] == ["[redacted]"] * len(CUSTOM_CREDENTIALS)
        assert [kept[name] for name in others] == list(others.values())
        assert kept["X-Webhook-Signature"] not in ("", "[redacted]")  # what was verified: no credential
    [attempt] = delivery.attempts
    assert "KeyError: '[redacted] [redacted]'" in attempt.error  # the handler quoted two of them
    everything = repr((stored, delivery))
    assert not [value for value in CUSTOM_CREDENTIALS.values() if value in everything]


def test_headers_named_like_credentials_kept_before_are_masked_when_shown(
    make_app: Callable[..., Flask],
) -> None:
    # Kept by a version that redacted only Authorization, Cookie and Proxy-Authorization.
    from flask_hooks.core.inbox import Kept

    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    receiver = hooks.receiver(app)
    headers = (("X-Api-Key", "key-1"), ("X-Request-Id", "req-1"), ("X-Gitlab-Token", "key-5"))
    keep = Kept("payment.succeeded", b"{}", headers, receiver.now(), 0, 3600)
    receiver.store.claim(receiver.ns, "old_1", now=receiver.now(), lease=60, ttl=3600, keep=keep)
    delivery = hooks.inbox(app).get("old_1")
    assert delivery is not None
    assert delivery.headers == (
        ("X-Api-Key", "[redacted]"),
        ("X-Request-Id", "req-1"),
        ("X-Gitlab-Token", "[redacted]"),
    )
    shown = app.test_cli_runner().invoke(args=["hooks", "show", "old_1", "--json"]).stdout
    assert "key-1" not in shown and "key-5" not in shown and "req-1" in shown


def test_every_providers_signature_headers_are_kept() -> None:
    # The rule for credential names spares what the receiver verifies: operators read it.
    from flask_hooks.core.inbox import redact, redacted_names
    from tests.providers.samples import cases, signed

    for case in cases():
        headers, _, _ = signed(case)
        pairs = list(headers.items())
        declared = redacted_names(case.provider.redacted_headers)
        expected = [(k, "[redacted]" if k.lower() in declared else v) for k, v in pairs]
        assert list(redact(pairs, case.provider.redacted_headers)) == expected, case.name
    assert redact([("X-Auth-Signature", "v1=ab"), ("X-Auth", "t")]) == (
        ("X-Auth-Signature", "v1=ab"),
        ("X-Auth", "[redacted]"),
    )


def test_replaying_a_completed_delivery_runs_nothing_unless_named(shop: Any) -> None:
    app, hooks, bug, booked = shop
    bug.fixed = True
    generic_post(app.test_client(), PAYLOAD)
    replayed: list[dict[str, Any]] = []
    with signals.delivery_replayed.connected_to(lambda _s, **kw: replayed.append(kw), app):
        after = hooks.inbox(app).replay("evt_1")
    assert after.status == "received"
    # A replay with nothing to run is still one an operator made: subscribers hear of it.
    heard = [(kw["event"].id, kw["event"].replayed, kw["outcome"]) for kw in replayed]
    assert heard == [("evt_1", True, "received")]
    assert booked == ["evt_1"] and len(bug.calls) == 1  # the last handler has no mark: still not rerun
    hooks.inbox(app).replay("evt_1", handlers=["billing.invoice"])
    assert bug.calls == [("evt_1", False), ("evt_1", True)] and booked == ["evt_1"]


def test_a_refused_request_leaves_no_credential_in_the_log(make_app: Callable[..., Flask]) -> None:
    from flask_hooks.providers import Narada

    hooks = Hooks(store="memory://", provider=Narada(token="tok-123", secret="sec-456"))
    app = make_app(hooks)
    body = b'{"requestId": "r1", "status": "success", "secret": "sec-456"}'
    response = app.test_client().post("/webhooks", data=body, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    receiver = hooks.receiver(app)
    [line] = receiver.store.deliveries(receiver.ns)
    assert "sec-456" not in line.excerpt and '"secret": "[redacted]"' in line.excerpt


def test_a_replay_killed_mid_handler_runs_once_when_its_lease_ran_out(make_app: Callable[..., Flask]) -> None:
    from tests.helpers import Crash

    clock = ManualClock()
    hooks = Hooks(store="memory://", clock=clock, lease=30)
    mode = {"now": "fail"}
    runs: list[bool] = []

    @hooks.on("*")
    def handler(event: Event) -> None:
        runs.append(event.replayed)
        if mode["now"] == "fail":
            raise RuntimeError("bug")
        if mode["now"] == "crash":
            raise Crash()  # the process dies mid-handler: nothing below runs

    app = make_app(hooks)
    client = app.test_client()
    generic_post(client, PAYLOAD)
    mode["now"] = "crash"
    with pytest.raises(Crash):
        hooks.inbox(app).replay("evt_1")
    with pytest.raises(InFlight):
        hooks.inbox(app).replay("evt_1")  # its claim holds until the lease runs out
    assert generic_post(client, PAYLOAD).status_code == 409
    clock.advance(31)
    mode["now"] = "fixed"
    assert hooks.inbox(app).replay("evt_1").status == "received"
    assert runs == [False, True, True]
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}


# Form posts ----------------------------------------------------------------------------------

SLACK_TOKEN = "LEGACYTOKEN123"
#: A response_url lets whoever has it post to the channel: masked as the token is.
RESPONSE_URL = "https://hooks.slack.com/actions/T1/123/SECRETPATH"
INTERACTION = {
    "type": "block_actions",
    "token": SLACK_TOKEN,
    "trigger_id": "1.2",
    "team": {"id": "T1"},
    "response_url": RESPONSE_URL,
}


def _slack(body: bytes) -> dict[str, str]:
    now = str(int(time.time()))
    digest = hmac.new(b"slack-signing-secret", f"v0:{now}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Signature": f"v0={digest}",
        "X-Slack-Request-Timestamp": now,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _github(body: bytes) -> dict[str, str]:
    digest = hmac.new(b"github-secret", body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "gh-1",
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest.mark.parametrize(
    ("provider", "body", "sign", "id", "payload"),
    [
        (
            "slack",
            f"token={SLACK_TOKEN}&team_id=T1&command=%2Fdeploy&text=now&trigger_id=9.9".encode(),
            _slack,
            "9.9",
            {"token": SLACK_TOKEN, "team_id": "T1", "command": "/deploy", "text": "now", "trigger_id": "9.9"},
        ),
        ("slack", b"payload=" + quote_plus(json.dumps(INTERACTION)).encode(), _slack, "1.2", INTERACTION),
        ("github", b"payload=" + quote_plus('{"ref": "main"}').encode(), _github, "gh-1", {"ref": "main"}),
    ],
    ids=["slack-command", "slack-interaction", "github-form"],
)
def test_a_form_posts_payload_is_shown_as_its_provider_reads_it(
    make_app: Callable[..., Flask],
    provider: str,
    body: bytes,
    sign: Callable[[bytes], dict[str, str]],
    id: str,
    payload: dict[str, Any],
) -> None:
    # Delivery.payload was None for every form post: `flask hooks show` and the dashboard showed none.
    secret = "slack-signing-secret" if provider == "slack" else "github-secret"
    hooks = Hooks(store="memory://", provider=provider, secret=secret)
    app = make_app(hooks)
    hooks.on("*")(lambda event: None)
    assert app.test_client().post("/webhooks", data=body, headers=sign(body)).status_code == 200
    delivery = hooks.inbox(app).get(id)
    assert delivery is not None and delivery.payload == payload
    masked = delivery.shown_payload()
    if provider == "slack":  # its legacy token rides in the body: masked wherever shown
        assert masked["token"] == "[redacted]" and SLACK_TOKEN not in json.dumps(masked)
        assert RESPONSE_URL not in json.dumps(masked)
    shown = app.test_cli_runner().invoke(args=["hooks", "show", id, "--json"])
    assert json.loads(shown.stdout)["payload"] == masked
    text = app.test_cli_runner().invoke(args=["hooks", "show", id]).stdout
    assert json.dumps(masked, indent=2).splitlines()[1].strip() in text
    assert SLACK_TOKEN not in text and RESPONSE_URL not in text
    assert payload_text(delivery).text == json.dumps(masked, indent=2, ensure_ascii=False)


class Counted(Slack):
    """Slack, counting how often a kept body is parsed."""

    parses = 0

    def parse(self, headers: Any, body: bytes) -> Any:
        Counted.parses += 1
        return super().parse(headers, body)


def test_a_form_posts_payload_is_parsed_once_per_view(make_app: Callable[..., Flask]) -> None:
    # Every read of payload, form and hidden() parsed the body again: a list page of 20
    # large Slack interactions took seconds.
    hooks = Hooks(store="memory://", provider=Counted(), secret="slack-signing-secret")
    app = make_app(hooks)
    hooks.on("*")(lambda event: None)
    body = b"payload=" + quote_plus(json.dumps(INTERACTION)).encode()
    assert app.test_client().post("/webhooks", data=body, headers=_slack(body)).status_code == 200
    Counted.parses = 0
    assert len(hooks.inbox(app).query()) == 1 and Counted.parses == 0  # a list page shows no payload
    delivery = hooks.inbox(app).get("1.2")
    assert delivery is not None
    secrets = hidden(delivery, ["slack-signing-secret"])
    assert delivery.form == delivery.payload and delivery.shown_payload(secrets)["token"] == "[redacted]"
    assert app.test_cli_runner().invoke(args=["hooks", "show", "1.2"]).exit_code == 0
    assert Counted.parses <= 4  # the view's two (its secrets, its payload), and show's own two


class Ledger(Provider):
    """A custom provider whose payload is no JSON value (amounts as Decimal), and which
    refuses a body it once took (``broken``)."""

    name = "ledger"
    broken = False

    def verify(self, headers: Any, body: bytes, keys: Any, *, now: float, tolerance: Any) -> Verified:
        return Verified(0, None)

    def parse(self, headers: Any, body: bytes) -> Parsed:
        if Ledger.broken:
            raise RuntimeError("the parser of a later release")
        id, amount = body.decode().split(";")
        return Parsed(id=id, type="ledger.entry", payload={"amount": Decimal(amount)}, attempt=None)

    def sign(self, outgoing: Any, key: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize("broken", [False, True])
def test_a_custom_providers_payload_never_breaks_a_view(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    # `flask hooks show` exited 1 (Decimal is not JSON serializable) and the dashboard's page
    # was a 500; a parse that raised anything but PayloadError did the same.
    hooks = Hooks(store="memory://", provider=Ledger(), secret="unused")
    app = make_app(hooks)
    hooks.on("*")(lambda event: None)
    assert app.test_client().post("/webhooks", data=b"L-1;12.50").status_code == 200
    monkeypatch.setattr(Ledger, "broken", broken)
    delivery = hooks.inbox(app).get("L-1")
    assert delivery is not None and delivery.payload == (None if broken else {"amount": "12.50"})
    for args in (["hooks", "show", "L-1"], ["hooks", "show", "L-1", "--json"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
    assert payload_text(delivery).text


@pytest.mark.parametrize("inside", ["no request", "another request"])
def test_a_replay_runs_its_handlers_in_the_deliverys_own_request(
    make_app: Callable[..., Flask], inside: str
) -> None:
    # A replay ran outside any request: a handler that read `request` (or called url_for)
    # raised "working outside of request context", so the fix could never be replayed;
    # from the dashboard it read the operator's form post instead of the delivery.
    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    seen: list[tuple[str, str, bytes, str | None]] = []
    fixed = threading.Event()

    @hooks.on("*")
    def handled(event: Event) -> None:
        signature = request.headers.get("X-Webhook-Signature")
        seen.append((request.method, request.path, request.get_data(), signature))
        if not fixed.is_set():
            raise RuntimeError("bug")

    body = json.dumps(PAYLOAD).encode()
    assert generic_post(app.test_client(), PAYLOAD).status_code == 500
    fixed.set()
    if inside == "no request":
        assert hooks.inbox(app).replay("evt_1").status == "received"
    else:
        with app.test_request_context("/hooks/delivery/replay", method="POST", data={"id": "evt_1"}):
            assert hooks.inbox(app).replay("evt_1").status == "received"
            assert request.path == "/hooks/delivery/replay"  # the page's own, after the replay
    live, replayed = seen
    assert replayed[:3] == live[:3] == ("POST", "/webhooks", body)
    assert replayed[3] is not None and live[3] is not None


@pytest.mark.parametrize("received", ["chunked", "over the app's MAX_CONTENT_LENGTH"])
def test_a_replay_reads_the_body_the_handler_read_live(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, received: str
) -> None:
    # A delivery gunicorn took chunked kept its Transfer-Encoding, and the replay's request
    # then read an empty body (a 400); one over the app's MAX_CONTENT_LENGTH (within
    # max_body, which the live view lifts it to) was a 413 in every replay.
    from flask_hooks.core import pipeline

    if received == "chunked":
        kept = pipeline.header_pairs
        monkeypatch.setattr(pipeline, "header_pairs", lambda h: (*kept(h), ("Transfer-Encoding", "chunked")))
    hooks = Hooks(store="memory://")
    app = make_app(hooks, MAX_CONTENT_LENGTH=10 if received != "chunked" else None)
    read: list[bytes] = []
    fixed = threading.Event()

    @hooks.on("*")
    def handled(event: Event) -> None:
        read.append(request.get_data())
        if not fixed.is_set():
            raise RuntimeError("bug")

    assert generic_post(app.test_client(), PAYLOAD).status_code == 500
    fixed.set()
    assert hooks.inbox(app).replay("evt_1").status == "received"
    assert read == [json.dumps(PAYLOAD).encode()] * 2


def test_a_replay_has_an_app_context_and_a_host_of_its_own(make_app: Callable[..., Flask]) -> None:
    # From the dashboard, a replay shared the page's `g` (its teardown closed the page's
    # resources) and built URLs for localhost instead of the host the delivery came to.
    hooks = Hooks(store="memory://")
    app = make_app(hooks, APPLICATION_ROOT="/api")  # mounted under /api, behind a TLS proxy
    seen: list[tuple[object, str]] = []
    fixed = threading.Event()

    @hooks.on("*")
    def handled(event: Event) -> None:
        seen.append((g.get("user"), url_for("flask_hooks.hooks", _external=True)))
        if not fixed.is_set():
            raise RuntimeError("bug")

    body = json.dumps(PAYLOAD).encode()
    signed = {"X-Webhook-Signature": generic_signature(body, SECRET), "Content-Type": "application/json"}
    signed["X-Forwarded-Proto"] = "https"
    client = app.test_client()
    response = client.post("/webhooks", data=body, headers=signed, base_url="https://hooks.example.com/api")
    assert response.status_code == 500
    fixed.set()
    with app.test_request_context("/hooks/delivery/replay", method="POST"):
        g.user = "alice"
        assert hooks.inbox(app).replay("evt_1").status == "received"
        assert g.user == "alice"
    assert seen[0][1] == seen[1][1] == "https://hooks.example.com/api/webhooks"
    assert seen[1][0] is None


def test_no_repr_of_a_kept_delivery_shows_its_body(make_app: Callable[..., Flask]) -> None:
    # repr(Delivery), repr(Stored) and repr(Kept) printed the raw body: Narada's secret, Slack's
    # token and response_url, in any log line or traceback that showed one.
    from flask_hooks.core.inbox import Kept

    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    hooks.on("*")(lambda event: None)
    body = {**PAYLOAD, "secret": "BODY-SECRET-1"}
    assert generic_post(app.test_client(), body).status_code == 200
    delivery = hooks.inbox(app).get("evt_1")
    stored = hooks.inbox(app)._stored("evt_1")
    kept = Kept("a.b", b'{"secret": "BODY-SECRET-1"}', (), 0.0, None, 60.0)
    for shown in (repr(delivery), repr(stored), repr(kept)):
        assert "BODY-SECRET-1" not in shown, shown


def test_a_replay_that_lost_its_claim_mid_handler_says_so(make_app: Callable[..., Flask]) -> None:
    # Frozen past its lease while a sender's retry took the delivery over, the replay was
    # reported "replayed 1: 1 received", exit 0, hiding that its handler ran beside the retry's.
    clock = ManualClock()
    hooks = Hooks(store="memory://", clock=clock)
    app = make_app(hooks)
    calls: list[bool] = []

    @hooks.on("*")
    def handled(event: Event) -> None:
        calls.append(event.replayed)
        if len(calls) == 1:
            raise RuntimeError("bug")
        if event.replayed:  # the replay freezes past its lease; the sender retries meanwhile
            clock.advance(61)
            assert generic_post(app.test_client(), PAYLOAD).status_code == 200

    client = app.test_client()
    assert generic_post(client, PAYLOAD).status_code == 500
    clock.advance(3600)  # the operator replays an hour later
    with pytest.raises(LeaseLost, match="may have run twice"):  # an InFlight: nothing catches it as done
        hooks.inbox(app).replay("evt_1")
    assert calls == [False, True, False]
    assert generic_post(client, PAYLOAD).get_json() == {"status": "duplicate"}
    # The lost attempt is kept among the delivery's attempts, not only in the app's log.
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None
    lost = [a for a in delivery.attempts if a.code == 409]
    assert [a.outcome for a in lost] == ["in-flight"] and "LeaseLost" in lost[0].error
    assert lost[0].handlers == () and lost[0].at == delivery.received_at + 3661  # when it found out
    [line] = [e for e in hooks.receiver(app).store.deliveries(hooks.receiver(app).ns) if e.code == 409]
    assert line.reason == "lease lost"


def test_a_replay_its_provider_no_longer_reads_is_refused_not_a_500(make_app: Callable[..., Flask]) -> None:
    # The provider's parse error (a custom provider's new release) escaped the replay: the
    # dashboard's replay button answered 500 with a traceback, the CLI crashed.
    hooks = Hooks(store="memory://", provider=Ledger(), secret="unused")
    app = make_app(hooks)
    hooks.on("*")(lambda event: (_ for _ in ()).throw(RuntimeError("bug")))
    assert app.test_client().post("/webhooks", data=b"L-1;12.50").status_code == 500
    Ledger.broken = True
    try:
        with pytest.raises(ValueError, match="no longer reads its body"):
            hooks.inbox(app).replay("L-1")
        result = app.test_cli_runner().invoke(args=["hooks", "replay", "L-1"])
        assert result.exit_code == 1 and "no longer reads its body" in result.output
    finally:
        Ledger.broken = False
