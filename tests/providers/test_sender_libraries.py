"""Requests made by the senders' own signing libraries, end to end through a Flask app.

Each test builds the body and headers with the sender's library (``standardwebhooks``,
``svix``, ``stripe``, ``slack_sdk``), never with flask_hooks, posts them through the test
client and checks what CONTRACT.md's status table says: the handler runs once, the same
request again is a duplicate that runs nothing, and a forgery (another body under the same
signature, another secret, a timestamp outside the tolerance) is a 401 that runs nothing.
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import standardwebhooks
import stripe
from flask import Flask
from flask.testing import FlaskClient
from slack_sdk.signature import SignatureVerifier
from svix.webhooks import Webhook as SvixWebhook

from flask_hooks import Event, Hooks

NOW = 1_700_000_000
#: The SDKs' own test secret (SENDERS.md section 5) and a second, older one.
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHSEC_OLD = "whsec_" + base64.b64encode(b"an-older-key-24-bytes-ok").decode()
WHSEC_OTHER = "whsec_" + base64.b64encode(b"nobody-configured-this!!").decode()
STRIPE_SECRET = "whsec_test_secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def receiver_app(make_app: Callable[..., Flask], provider: str, secret: Any) -> tuple[Flask, list[Event]]:
    """An app whose one receiver (``provider``, ``secret``) reads the fixed time ``NOW``."""
    calls: list[Event] = []
    hooks = Hooks(provider=provider, secret=secret, store="memory://", clock=lambda: NOW)

    @hooks.on("*")
    def record(event: Event) -> None:
        calls.append(event)

    return make_app(hooks), calls


def post(client: FlaskClient, body: str | bytes, headers: Mapping[str, str]) -> Any:
    return client.post("/webhooks", data=body, headers=dict(headers))


def assert_once(
    client: FlaskClient,
    calls: list[Event],
    body: str,
    headers: Mapping[str, str],
    expected: tuple[str, str],
) -> None:
    """Handled once (id, type); the identical request again is a duplicate that runs nothing."""
    first = post(client, body, headers)
    assert (first.status_code, first.get_json()) == (200, {"status": "received"}), first.data
    assert [(event.id, event.type) for event in calls] == [expected]
    assert calls[0].body == body.encode()
    again = post(client, body, headers)
    assert (again.status_code, again.get_json()) == (200, {"status": "duplicate"})
    assert len(calls) == 1


def assert_rejected(client: FlaskClient, calls: list[Event], body: str, headers: Mapping[str, str]) -> str:
    """A 401 (the contract's status for a bad signature or timestamp) that runs nothing."""
    before = len(calls)
    response = post(client, body, headers)
    assert response.status_code == 401, response.data
    assert response.get_json()["status"] == "rejected"
    assert len(calls) == before
    return str(response.get_json()["reason"])


def at(stamp: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)


# Standard Webhooks and Svix ------------------------------------------------------


def sw_headers(
    library: standardwebhooks.Webhook | SvixWebhook, msg_id: str, body: str, stamp: int, prefix: str
) -> dict[str, str]:
    return {
        prefix + "id": msg_id,
        prefix + "timestamp": str(stamp),
        prefix + "signature": library.sign(msg_id, at(stamp), body),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("provider", "library", "prefix"),
    [
        ("standard-webhooks", standardwebhooks.Webhook, "webhook-"),
        ("svix", SvixWebhook, "svix-"),
        ("svix", SvixWebhook, "webhook-"),  # Svix's white-label header names
    ],
)
def test_standard_webhooks_and_svix_libraries(
    make_app: Callable[..., Flask], provider: str, library: Any, prefix: str
) -> None:
    app, calls = receiver_app(make_app, provider, [WHSEC, WHSEC_OLD])
    client = app.test_client()
    ours, other = library(WHSEC), library(WHSEC_OTHER)
    body = '{"type":"invoice.paid","timestamp":"2023-11-14T22:13:20Z","data":{"amount":100}}'
    headers = sw_headers(ours, "msg_2Lk7", body, NOW, prefix)

    assert_once(client, calls, body, headers, ("msg_2Lk7", "invoice.paid"))

    tampered = body.replace("100", "999")
    assert assert_rejected(client, calls, tampered, headers) == "signature mismatch"
    assert assert_rejected(client, calls, body, sw_headers(other, "msg_x", body, NOW, prefix))
    # The SDKs' tolerance: 5 minutes each way.
    stale = sw_headers(ours, "msg_old", body, NOW - 301, prefix)
    assert assert_rejected(client, calls, body, stale) == "timestamp too old"
    early = sw_headers(ours, "msg_new", body, NOW + 301, prefix)
    assert assert_rejected(client, calls, body, early) == "timestamp in the future"
    # The same request with only the id changed: the id is signed, so it is no new delivery.
    renamed = {**headers, prefix + "id": "msg_other"}
    assert assert_rejected(client, calls, body, renamed) == "signature mismatch"


@pytest.mark.parametrize(
    ("provider", "library"), [("standard-webhooks", standardwebhooks.Webhook), ("svix", SvixWebhook)]
)
def test_one_entry_per_active_key_during_rotation(
    make_app: Callable[..., Flask], provider: str, library: Any
) -> None:
    """The sender lists one ``v1,`` entry per active key (and may add ``v1a`` ed25519 ones)."""
    app, calls = receiver_app(make_app, provider, [WHSEC, WHSEC_OLD])
    client = app.test_client()
    body = '{"type":"invoice.paid","data":{}}'
    unknown = library(WHSEC_OTHER).sign("msg_rot", at(NOW), body)
    old = library(WHSEC_OLD).sign("msg_rot", at(NOW), body)
    headers = {
        "webhook-id": "msg_rot",
        "webhook-timestamp": str(NOW),
        "webhook-signature": f"v1a,{'A' * 86}== {unknown} {old}",
    }

    assert_once(client, calls, body, headers, ("msg_rot", "invoice.paid"))
    assert calls[0].secret_index == 1


# Stripe ---------------------------------------------------------------------------


def stripe_event(event_id: str, type: str, stamp: int) -> str:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": stamp,
        "type": type,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 100}},
        "livemode": False,
        "pending_webhooks": 1,
    }
    return json.dumps(event, indent=2)  # Stripe pretty-prints its bodies


def test_stripe_library(make_app: Callable[..., Flask]) -> None:
    app, calls = receiver_app(make_app, "stripe", [STRIPE_SECRET])
    client = app.test_client()
    body = stripe_event("evt_1NG8Du", "payment_intent.succeeded", NOW)
    sign = stripe.WebhookSignature.generate_signature_header
    headers = {"Stripe-Signature": sign(body, STRIPE_SECRET, NOW), "Content-Type": "application/json"}
    # What the SDK itself accepts is what the receiver is shown.
    assert stripe.Webhook.construct_event(body, headers["Stripe-Signature"], STRIPE_SECRET, tolerance=None)

    assert_once(client, calls, body, headers, ("evt_1NG8Du", "payment_intent.succeeded"))

    assert assert_rejected(client, calls, body.replace("100", "999"), headers) == "signature mismatch"
    wrong = {"Stripe-Signature": sign(body, "whsec_someone_else", NOW)}
    assert assert_rejected(client, calls, body, wrong) == "signature mismatch"
    # The SDK's tolerance: 300 s in the past.
    stale = {"Stripe-Signature": sign(body, STRIPE_SECRET, NOW - 301)}
    assert assert_rejected(client, calls, body, stale) == "timestamp too old"


def test_stripe_rolled_secret_sends_a_v1_per_live_secret(make_app: Callable[..., Flask]) -> None:
    """After "roll secret" Stripe signs with both secrets; a receiver holding either accepts."""
    body = stripe_event("evt_roll", "invoice.paid", NOW)
    sign = stripe.WebhookSignature.generate_signature_header
    new = sign(body, "whsec_rolled_new", NOW)
    old_v1 = sign(body, STRIPE_SECRET, NOW).split(",", 1)[1]
    v0 = "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"  # ignored, as by the SDK
    headers = {"Stripe-Signature": f"{new},{old_v1},{v0}"}
    for secrets, index in (([STRIPE_SECRET], 0), (["whsec_rolled_new"], 0), (["whsec_x", STRIPE_SECRET], 1)):
        app, calls = receiver_app(make_app, "stripe", secrets)
        assert_once(app.test_client(), calls, body, headers, ("evt_roll", "invoice.paid"))
        assert calls[0].secret_index == index


# Slack ----------------------------------------------------------------------------


def slack_headers(body: str, stamp: int, secret: str = SLACK_SECRET) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(stamp), body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": signature}


def test_slack_events_api_signed_by_slack_sdk(make_app: Callable[..., Flask]) -> None:
    app, calls = receiver_app(make_app, "slack", [SLACK_SECRET])
    client = app.test_client()
    envelope = {
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": {"type": "app_mention", "user": "U123", "text": "<@U0LAN0Z89> hi", "ts": "1515449522.0001"},
        "type": "event_callback",
        "event_id": "Ev123ABC456",
        "event_time": NOW,
    }
    body = json.dumps(envelope)
    headers = {**slack_headers(body, NOW), "Content-Type": "application/json"}

    assert_once(client, calls, body, headers, ("Ev123ABC456", "app_mention"))
    # Slack's retry of the same event: new headers, same event_id, nothing runs again.
    retry = {**slack_headers(body, NOW + 60), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
    response = post(client, body, retry)
    assert (response.status_code, response.get_json(), len(calls)) == (200, {"status": "duplicate"}, 1)

    assert assert_rejected(client, calls, body.replace("hi", "ho"), headers) == "signature mismatch"
    assert assert_rejected(client, calls, body, slack_headers(body, NOW, "0" * 32)) == "signature mismatch"
    # slack_sdk refuses abs(now - ts) > 300, both ways.
    assert assert_rejected(client, calls, body, slack_headers(body, NOW - 301)) == "timestamp too old"
    assert assert_rejected(client, calls, body, slack_headers(body, NOW + 301)) == "timestamp in the future"


def test_slack_slash_command_and_handshake_signed_by_slack_sdk(make_app: Callable[..., Flask]) -> None:
    app, calls = receiver_app(make_app, "slack", [SLACK_SECRET])
    client = app.test_client()
    trigger = "13345224609.738474920.8088930838d88f008e0"
    form = f"token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&command=%2Fweather&text=94070&trigger_id={trigger}"
    headers = {**slack_headers(form, NOW), "Content-Type": "application/x-www-form-urlencoded"}
    assert_once(client, calls, form, headers, (trigger, "command.weather"))
    assert assert_rejected(client, calls, form.replace("94070", "94071"), headers) == "signature mismatch"

    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    handshake = json.dumps({"token": "t", "challenge": challenge, "type": "url_verification"})
    response = post(client, handshake, {**slack_headers(handshake, NOW), "Content-Type": "application/json"})
    assert (response.status_code, response.get_json()) == (200, {"challenge": challenge})
    assert len(calls) == 1  # the handshake runs no handler
    assert_rejected(client, calls, handshake, slack_headers(handshake, NOW, "0" * 32))


def test_slack_options_requests_from_one_modal_each_get_their_own_answer(
    make_app: Callable[..., Flask],
) -> None:
    # block_suggestion carries no trigger_id; every keystroke in one modal shares the view's id.
    hooks = Hooks(provider="slack", secret=SLACK_SECRET, store="memory://", clock=lambda: NOW)

    @hooks.on("interactive.block_suggestion")
    def options(event: Event) -> dict[str, Any]:
        return {"options": [{"text": {"type": "plain_text", "text": event.payload["value"]}, "value": "1"}]}

    client = make_app(hooks).test_client()
    answers = []
    for value, view in (("ab", {"id": "V0PKB1ZFV"}), ("abc", {"id": "V0PKB1ZFV"}), ("x", None)):
        inner = {
            "type": "block_suggestion",
            "action_id": "pick",
            "block_id": "b",
            "value": value,
            "view": view,
        }
        form = "payload=" + urllib.parse.quote(json.dumps(inner))
        headers = {**slack_headers(form, NOW), "Content-Type": "application/x-www-form-urlencoded"}
        response = post(client, form, headers)
        assert response.status_code == 200, response.data
        answers.append(response.get_json()["options"][0]["text"]["text"])
    assert answers == ["ab", "abc", "x"]
