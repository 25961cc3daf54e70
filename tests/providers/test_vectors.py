"""Published vectors and cross-checks against the senders' own libraries."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import standardwebhooks
import stripe
from flask import Flask
from svix.webhooks import Webhook as SvixWebhook

from flask_hooks import Hooks
from flask_hooks.core.errors import ConfigError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import (
    GitHub,
    HmacKey,
    Outgoing,
    Shopify,
    Slack,
    StandardWebhooks,
    Stripe,
    Svix,
)

WIDE = (300.0, 300.0)


def test_github_published_vector() -> None:
    provider = GitHub()
    keys = provider.keys(["It's a Secret to Everybody"])
    headers = Headers(
        {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}
    )
    assert provider.verify(headers, b"Hello, World!", keys, now=0, tolerance=WIDE).secret_index == 0


SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SW_BODY = b'{"test": 2432232314}'


def test_standard_webhooks_sdk_vector() -> None:
    provider = StandardWebhooks()
    keys = provider.keys([SW_SECRET])
    verified = provider.verify(Headers(SW_HEADERS), SW_BODY, keys, now=1614265330, tolerance=WIDE)
    assert (verified.secret_index, verified.timestamp) == (0, 1614265330)
    invalid = {**SW_HEADERS, "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}
    with pytest.raises(VerificationError):
        provider.verify(Headers(invalid), SW_BODY, keys, now=1614265330, tolerance=WIDE)


def test_standard_webhooks_key_is_the_decoded_base64_not_the_string() -> None:
    provider = StandardWebhooks()
    literal = (HmacKey(SW_SECRET.encode()),)
    with pytest.raises(VerificationError):
        provider.verify(Headers(SW_HEADERS), SW_BODY, literal, now=1614265330, tolerance=WIDE)
    # The prefix is optional, padding is added, raw key bytes are accepted.
    bare = provider.keys([SW_SECRET.removeprefix("whsec_").rstrip("=")])
    assert bare == provider.keys([SW_SECRET]) == (HmacKey(base64.b64decode(SW_SECRET[6:])),)
    assert provider.keys([b"raw-key-bytes"]) == (HmacKey(b"raw-key-bytes"),)  # type: ignore[list-item]


@pytest.mark.parametrize("secret", ["whsec_not*base64!", "whsec_", "whsec_abc=def", "\u00e9t\u00e9"])
def test_standard_webhooks_rejects_invalid_secrets_at_init(secret: str) -> None:
    with pytest.raises(ConfigError, match="whsec_"):
        StandardWebhooks().keys([secret])


def test_standard_webhooks_skips_v1a_and_unknown_entries() -> None:
    provider = StandardWebhooks()
    keys = provider.keys([SW_SECRET])
    sig = SW_HEADERS["webhook-signature"]
    headers = {**SW_HEADERS, "webhook-signature": f"v1a,AAAA v2,BBBB v1,!!! {sig} v1,zzzz"}
    assert provider.verify(Headers(headers), SW_BODY, keys, now=1614265330, tolerance=WIDE).secret_index == 0
    only_v1a = {**SW_HEADERS, "webhook-signature": "v1a," + sig[3:]}
    with pytest.raises(VerificationError, match="no v1"):
        provider.verify(Headers(only_v1a), SW_BODY, keys, now=1614265330, tolerance=WIDE)


def test_svix_headers_win_over_webhook_headers() -> None:
    provider = StandardWebhooks()
    keys = provider.keys([SW_SECRET])
    svix = {k.replace("webhook-", "svix-"): v for k, v in SW_HEADERS.items()}
    wrong = {"webhook-id": "msg_other", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
    headers = Headers({**wrong, **svix})
    assert provider.verify(headers, SW_BODY, keys, now=1614265330, tolerance=WIDE).secret_index == 0
    assert provider.parse(headers, b'{"type":"a.b"}').id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert Svix().verify(Headers(SW_HEADERS), SW_BODY, keys, now=1614265330, tolerance=WIDE).secret_index == 0


def test_standard_webhooks_cross_checked_with_the_sdk() -> None:
    now = int(time.time())  # the SDK verifies against the real clock
    webhook = standardwebhooks.Webhook(SW_SECRET)
    provider = StandardWebhooks()
    keys = provider.keys([SW_SECRET])
    body = '{"type":"invoice.paid","data":{"n":1}}'
    theirs = webhook.sign("msg_1", datetime.datetime.fromtimestamp(now, datetime.timezone.utc), body)
    headers = Headers({"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": theirs})
    assert provider.verify(headers, body.encode(), keys, now=now, tolerance=WIDE).timestamp == now
    ours = provider.sign(Outgoing("invoice.paid", {"n": 1}, "msg_2", now), keys[0])
    assert webhook.verify(ours.body, ours.headers)["type"] == "invoice.paid"


def test_svix_cross_checked_with_the_sdk() -> None:
    now = int(time.time())
    webhook = SvixWebhook(SW_SECRET)
    provider = Svix()
    keys = provider.keys([SW_SECRET])
    ours = provider.sign(Outgoing("invoice.paid", {"n": 1}, "msg_3", now), keys[0])
    assert set(ours.headers) >= {"svix-id", "svix-timestamp", "svix-signature"}
    webhook.verify(ours.body, ours.headers)
    body = '{"type":"x.y"}'
    theirs = webhook.sign("msg_4", datetime.datetime.fromtimestamp(now, datetime.timezone.utc), body)
    headers = Headers({"svix-id": "msg_4", "svix-timestamp": str(now), "svix-signature": theirs})
    assert provider.verify(headers, body.encode(), keys, now=now, tolerance=WIDE).secret_index == 0


@pytest.mark.parametrize("preset", ["standard-webhooks", "svix"])
@pytest.mark.parametrize(
    "raw",
    [bytes(range(200, 224)), b"abcd", b"not base64 at all!"],
    ids=["not-utf8", "utf8-and-base64", "utf8-not-base64"],
)
def test_a_secret_given_as_bytes_is_the_raw_key_as_in_the_sdk(preset: str, raw: bytes) -> None:
    """``Webhook(b"...")`` keys with the bytes themselves; so does ``Hooks(secret=b"...")``.

    Before, the bytes were read as UTF-8 text and then as base64: refused,
    or (``b"abcd"``) keyed with other bytes, so every delivery was a 401.
    """
    app = Flask("sw_bytes")
    hooks = Hooks(app, provider=preset, secret=[raw, SW_SECRET], store="memory://")
    seen: list[str] = []
    hooks.on("*")(lambda event: seen.append(event.id))
    webhook = standardwebhooks.Webhook(raw) if preset == "standard-webhooks" else SvixWebhook(raw)
    prefix = "webhook-" if preset == "standard-webhooks" else "svix-"
    now = int(time.time())  # the receiver's clock is the real one
    body = '{"type":"invoice.paid","data":{}}'
    signature = webhook.sign("msg_raw", datetime.datetime.fromtimestamp(now, datetime.timezone.utc), body)
    headers = {prefix + "id": "msg_raw", prefix + "timestamp": str(now), prefix + "signature": signature}
    response = app.test_client().post("/webhooks", data=body, headers=headers)
    assert (response.status_code, seen) == (200, ["msg_raw"])
    receiver = hooks.receiver(app)
    assert receiver.keys[0] == HmacKey(raw)
    # Blanked wherever shown, as the dashboard spells it.
    assert receiver.secrets[0] == "whsec_" + base64.b64encode(raw).decode()


STRIPE_SECRET = "whsec_test_secret"
STRIPE_BODY = b'{"id":"evt_test_webhook","object":"event"}'


def test_stripe_self_computed_vector_keys_with_the_whole_whsec_string() -> None:
    provider = Stripe()
    keys = provider.keys([STRIPE_SECRET])
    assert keys == (HmacKey(STRIPE_SECRET.encode()),)
    mac = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
    headers = Headers({"Stripe-Signature": f"t=1700000000,v1={'0' * 64},v0=abc,v1={mac}"})
    verified = provider.verify(headers, STRIPE_BODY, keys, now=1700000000, tolerance=WIDE)
    assert (verified.secret_index, verified.timestamp) == (0, 1700000000)


def test_stripe_cross_checked_with_the_sdk() -> None:
    provider = Stripe()
    keys = provider.keys([STRIPE_SECRET])
    signer = stripe.WebhookSignature
    theirs = signer.generate_signature_header(STRIPE_BODY.decode(), STRIPE_SECRET, 1700000000)
    assert (
        provider.verify(
            Headers({"Stripe-Signature": theirs}), STRIPE_BODY, keys, now=1700000000, tolerance=WIDE
        ).timestamp
        == 1700000000
    )
    ours = provider.sign(Outgoing("charge.succeeded", {"id": "ch_1"}, "evt_1", 1700000000), keys[0])
    # as text: stripe before 15.6 took bytes as their repr, b'...'
    text = ours.body.decode()
    assert stripe.WebhookSignature.verify_header(text, ours.headers["Stripe-Signature"], STRIPE_SECRET)
    now = int(time.time())  # construct_event checks the real clock
    fresh = provider.sign(Outgoing("charge.succeeded", {"id": "ch_1"}, "evt_2", now), keys[0])
    event = stripe.Webhook.construct_event(fresh.body, fresh.headers["Stripe-Signature"], STRIPE_SECRET)
    assert (event["id"], event["type"]) == ("evt_2", "charge.succeeded")
    parsed = provider.parse(Headers(fresh.headers), fresh.body)
    assert (parsed.id, parsed.type) == ("evt_2", "charge.succeeded")


def test_shopify_self_computed_vector() -> None:
    provider = Shopify()
    body = b'{"id":820982911946154508,"email":"jon@example.com"}'
    headers = Headers({"X-Shopify-Hmac-SHA256": "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8="})
    assert provider.verify(headers, body, provider.keys(["hush"]), now=0, tolerance=WIDE).secret_index == 0


SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_slack_published_vector_and_its_slash_command() -> None:
    assert len(SLACK_BODY) == 362
    assert hashlib.sha256(SLACK_BODY).hexdigest().startswith("390eeeff")
    provider = Slack()
    keys = provider.keys(["8f742231b10e8888abcd99yyyzzz85a5"])
    headers = Headers(
        {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        }
    )
    assert provider.verify(headers, SLACK_BODY, keys, now=1531420618, tolerance=WIDE).timestamp == 1531420618
    with pytest.raises(VerificationError, match="too old"):
        provider.verify(headers, SLACK_BODY, keys, now=1531420618 + 301, tolerance=WIDE)
    with pytest.raises(VerificationError, match="future"):
        provider.verify(headers, SLACK_BODY, keys, now=1531420618 - 301, tolerance=WIDE)
    parsed = provider.parse(headers, SLACK_BODY)
    assert parsed.type == "command.webhook-collect"
    assert parsed.id == "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    assert parsed.attempt == 1


def test_slack_interactive_payload_is_typed_and_deduplicated_on_trigger_id() -> None:
    inner = {"type": "block_actions", "trigger_id": "13345224609.738474920.8088930838d88f008e0"}
    body = ("payload=" + json.dumps(inner)).encode()
    parsed = Slack().parse(Headers({"X-Slack-Retry-Num": "1"}), body)
    assert (parsed.type, parsed.id, parsed.attempt) == ("interactive.block_actions", inner["trigger_id"], 2)


def test_every_mac_here_is_independent_of_flask_hooks() -> None:
    """Sanity: the vectors above are what a plain hmac call gives."""
    mac = hmac.new(b"It's a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest()
    assert mac.startswith("757107ea")


STRIPE_MAC = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"

#: SENDERS.md section 5, each as the request a sender would post: (provider, secret, the
#: receiver's time, body, headers, what a verified delivery of these bytes is answered).
POSTED = [
    (
        "github",
        "It's a Secret to Everybody",
        0,
        b"Hello, World!",
        {
            "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "guid-1",
        },
        (400, "body is not JSON"),
    ),
    ("standard-webhooks", SW_SECRET, 1614265330, SW_BODY, SW_HEADERS, (400, "missing type")),
    (
        "svix",
        SW_SECRET,
        1614265330,
        SW_BODY,
        {k.replace("webhook-", "svix-"): v for k, v in SW_HEADERS.items()},
        (400, "missing type"),
    ),
    (
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
        1531420618,
        SLACK_BODY,
        {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        (200, None),
    ),
    (
        "stripe",
        STRIPE_SECRET,
        1700000000,
        STRIPE_BODY,
        {"Stripe-Signature": "t=1700000000,v1=" + STRIPE_MAC},
        (400, "missing type"),
    ),
    (
        "shopify",
        "hush",
        0,
        b'{"id":820982911946154508,"email":"jon@example.com"}',
        {
            "X-Shopify-Hmac-SHA256": "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8=",
            "X-Shopify-Topic": "customers/create",
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        },
        (200, None),
    ),
]


@pytest.mark.parametrize(
    ("provider", "secret", "now", "body", "headers", "answer"), POSTED, ids=[v[0] for v in POSTED]
)
def test_published_vectors_through_an_app(
    provider: str, secret: str, now: int, body: bytes, headers: dict[str, str], answer: tuple[int, Any]
) -> None:
    """Verified (the answer is the handler's or a 400 about the body, never a 401), and a
    signature differing in one character is a 401 that runs nothing."""
    app = Flask("vectors")
    hooks = Hooks(app, provider=provider, secret=[secret], store="memory://", clock=lambda: now)
    calls: list[str] = []
    hooks.on("*")(lambda event: calls.append(event.id))
    client = app.test_client()

    response = client.post("/webhooks", data=body, headers=headers)

    assert (response.status_code, response.get_json().get("reason")) == answer
    assert len(calls) == (1 if answer[0] == 200 else 0)
    name = next(n for n in headers if "signature" in n.lower() or "hmac" in n.lower())
    value = headers[name]
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    forged = client.post("/webhooks", data=body, headers={**headers, name: flipped})
    assert forged.status_code == 401, forged.data
    assert len(calls) == (1 if answer[0] == 200 else 0)
