"""What the plugin forges is what the senders' own libraries sign, on every retry.

``signed_delivery`` and each attempt of ``webhook_sender`` are checked against
``standardwebhooks``, ``svix``, ``stripe`` and ``slack_sdk``: the library, given the
same id, timestamp and body, writes the same signature header (or accepts the one
sent, for slack_sdk, whose clock is the fake one), and the timestamp is the time of
the attempt, as a sender signs each retry afresh.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import pytest
import standardwebhooks
import stripe
from flask import Flask, Response, request
from slack_sdk.signature import Clock, SignatureVerifier
from svix.webhooks import Webhook as SvixWebhook

from flask_hooks import Event, Hooks
from pytest_hooks.clock import FakeClock

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHSEC_OLD = "whsec_" + base64.b64encode(b"an-older-key-24-bytes-ok").decode()
SECRETS = {
    "standard-webhooks": [WHSEC, WHSEC_OLD],
    "svix": [WHSEC, WHSEC_OLD],
    "stripe": ["whsec_test_secret", "whsec_rolled_old"],
    "slack": ["8f742231b10e8888abcd99yyyzzz85a5", "0123456789abcdef0123456789abcdef"],
}
#: (fake time, headers, body) of every request that reached the app.
Seen = list[tuple[float, dict[str, str], bytes]]


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def failures() -> list[int]:
    """How many of the next requests the app answers 500 (after its handlers ran)."""
    return [0]


@pytest.fixture
def handled() -> list[Event]:
    return []


@pytest.fixture
def app(
    make_app: Callable[..., Flask], provider: str, seen: Seen, failures: list[int], handled: list[Event]
) -> Flask:
    hooks = Hooks(provider=provider, secret=SECRETS[provider], store="memory://")
    hooks.on("*")(handled.append)
    app = make_app(hooks)

    @app.before_request
    def record() -> None:
        now = app.extensions["hooks"].receivers["hooks"].now()
        seen.append((now, dict(request.headers), request.get_data()))

    @app.after_request
    def fail(response: Response) -> Response:
        if failures[0]:
            failures[0] -= 1
            return Response(b"{}", 500)
        return response

    return app


def at(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(stamp), datetime.timezone.utc)


def check(provider: str, secret: str, when: float, headers: dict[str, str], body: bytes) -> None:
    """``headers`` are what ``provider``'s own library writes for ``body`` at ``when``."""
    if provider in ("standard-webhooks", "svix"):
        prefix = "Webhook-" if provider == "standard-webhooks" else "Svix-"
        library = standardwebhooks.Webhook(secret) if provider == "standard-webhooks" else SvixWebhook(secret)
        stamp = headers[prefix + "Timestamp"]
        assert int(stamp) == int(when)
        assert headers[prefix + "Signature"] == library.sign(headers[prefix + "Id"], at(stamp), body.decode())
    elif provider == "stripe":
        header = headers["Stripe-Signature"]
        expected = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, int(when))
        assert header == expected
        # as text: stripe before 15.6 took bytes as their repr, b'...'
        assert stripe.WebhookSignature.verify_header(body.decode(), header, secret, tolerance=None)
    else:

        class Fake(Clock):
            def now(self) -> float:
                return when

        assert headers["X-Slack-Request-Timestamp"] == str(int(when))
        assert SignatureVerifier(secret, Fake()).is_valid_request(body, headers)


@pytest.mark.parametrize("provider", sorted(SECRETS), indirect=True)
@pytest.mark.parametrize("secret_index", [0, 1])
def test_signed_delivery_is_signed_as_the_senders_library_signs(
    provider: str,
    secret_index: int,
    signed_delivery: Any,
    webhook_clock: FakeClock,  # frozen: signed and received in the same second, however slow the machine
    seen: Seen,
    handled: list[Event],
) -> None:
    delivery = signed_delivery("invoice.paid", {"amount": 100}, secret_index=secret_index)

    response = delivery.send()

    assert response.status_code == 200, response.data
    [(when, headers, body)] = seen
    assert body == delivery.body
    check(provider, SECRETS[provider][secret_index], when, headers, body)
    assert [(event.id, event.secret_index) for event in handled] == [(delivery.id, secret_index)]


@pytest.mark.parametrize("provider", sorted(SECRETS), indirect=True)
def test_every_retry_is_signed_afresh_as_the_senders_library_signs(
    provider: str,
    webhook_sender: Any,
    signed_delivery: Any,
    webhook_clock: FakeClock,
    seen: Seen,
    failures: list[int],
    handled: list[Event],
) -> None:
    failures[0] = 3  # the handler runs on the first attempt; its 2xx never arrives
    schedule = "slack" if provider == "slack" else provider

    report = webhook_sender(schedule=schedule).send(signed_delivery("invoice.paid", {"amount": 100}))

    assert report.delivered and report.statuses == [500, 500, 500, 200]
    assert len(seen) == 4 and len(handled) == 1
    assert report.attempts[-1].response is not None
    assert report.attempts[-1].response.json == {"status": "duplicate"}
    times = [when for when, _, _ in seen]
    assert times == [webhook_clock.start + offset for offset in report.offsets]
    for when, headers, body in seen:
        assert body == seen[0][2]  # a retry is the same message
        check(provider, SECRETS[provider][0], when, headers, body)
