"""Preset-specific rules: configuration, credentials, parameters and exports."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from itsdangerous import TimestampSigner

import flask_hooks.providers as public
from flask_hooks import ConfigError, Event, Hooks, PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import (
    PRESETS,
    HmacKey,
    ItsDangerous,
    Narada,
    Noukai,
    Outgoing,
    Provider,
    Stripe,
    get_provider,
)

from .samples import NOW, WHSEC

WIDE = (300.0, 300.0)


def test_every_preset_name_resolves_and_is_exported() -> None:
    names = {
        "generic",
        "noukai",
        "narada",
        "flowstep",
        "standard-webhooks",
        "svix",
        "stripe",
        "github",
        "shopify",
        "slack",
        "itsdangerous",
    }
    assert set(PRESETS) == names
    for name in names:
        provider = get_provider(name)
        assert provider.name == name
        assert getattr(public, type(provider).__name__) is type(provider)
    for cls in (
        "Generic",
        "Noukai",
        "Narada",
        "FlowStep",
        "StandardWebhooks",
        "Svix",
        "Stripe",
        "GitHub",
        "Shopify",
        "Slack",
        "ItsDangerous",
    ):
        assert issubclass(getattr(public, cls), Provider)


# Narada -------------------------------------------------------------------

NARADA_BODY = {
    "requestId": "req_abc123def456",
    "secret": "cb_secret",
    "status": "success",
    "browserWindowId": "window_xyz789",
    "response": {"text": "Found 1,234 listings."},
    "createdAt": "2024-11-21T10:00:00.000000+00:00",
    "completedAt": "2024-11-21T10:00:45.000000+00:00",
    "usage": {"actions": 12, "credits": 5},
}


def narada_post(app: Flask, body: dict[str, Any], **headers: str) -> Any:
    return app.test_client().post("/webhooks", data=json.dumps(body), headers=headers)


def narada_app(make_app: Callable[..., Flask], hooks: Hooks, calls: list[Event], secret: Any = None) -> Flask:
    hooks.on("success", "error", "input-required")(calls.append)
    app = make_app()
    app.config["HOOKS_SECRET"] = secret
    hooks.init_app(app)
    return app


def test_narada_bare_preset_without_credentials_fails_closed(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    app.config["HOOKS_SECRET"] = None
    with pytest.raises(ConfigError, match="HOOKS_SECRET"):
        Hooks(provider="narada").init_app(app)
    with pytest.raises(ConfigError, match="HOOKS_SECRET"):
        Hooks(provider=Narada()).init_app(app)
    with pytest.raises(ConfigError):
        Narada(token="")


@pytest.mark.parametrize(
    ("secret", "says"),
    [(key, r"signing secret \(whsec_\.\.\.\), not an API key") for key in ("sk_1", "rk_a", "pk_x")]
    + [("whsec_", "nothing follows 'whsec_'")],
)
def test_a_stripe_api_key_for_the_webhook_secret_is_a_config_error(
    make_app: Callable[..., Flask], secret: str, says: str
) -> None:
    # Accepted, every genuine delivery was a 401 for want of the endpoint's whsec_ secret.
    with pytest.raises(ConfigError, match=says) as raised:
        Hooks(provider="stripe", secret=["whsec_good", secret], store="memory://").init_app(make_app())
    assert secret == "whsec_" or secret not in str(raised.value)


def test_narada_secret_kwarg_checks_the_body_secret_only(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    app = narada_app(make_app, Hooks(provider="narada", secret="cb_secret", store="memory://"), calls)
    assert narada_post(app, NARADA_BODY).status_code == 200
    assert (calls[0].id, calls[0].type) == ("req_abc123def456:success", "success")
    assert narada_post(app, {**NARADA_BODY, "secret": "nope", "requestId": "r2"}).status_code == 401
    assert narada_post(app, {**NARADA_BODY, "secret": None, "requestId": "r3"}).status_code == 401
    missing = {k: v for k, v in NARADA_BODY.items() if k != "secret"}
    assert narada_post(app, {**missing, "requestId": "r4"}).status_code == 401
    assert len(calls) == 1


def test_narada_unparsable_body_says_why_the_secret_is_missing(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    app = narada_app(make_app, Hooks(provider="narada", secret="cb_secret", store="memory://"), calls)
    body = json.dumps(NARADA_BODY).replace('"credits": 5', '"credits": 1e999')
    response = app.test_client().post("/webhooks", data=body)
    assert response.status_code == 401
    assert "missing secret: body has a number too large for a float" in response.get_data(as_text=True)
    response = app.test_client().post("/webhooks", data=b"{not json")
    assert response.status_code == 401
    assert "missing secret: body is not JSON" in response.get_data(as_text=True)
    assert calls == []


def test_narada_token_and_secret_are_both_required(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    provider = Narada(token=["tok_new", "tok_old"], secret="cb_secret")
    app = narada_app(make_app, Hooks(provider=provider, store="memory://"), calls)
    assert narada_post(app, NARADA_BODY, Authorization="Bearer tok_new").status_code == 200
    error = {**NARADA_BODY, "status": "error"}
    assert narada_post(app, error, Authorization="Bearer tok_old").status_code == 200
    assert [(e.type, e.secret_index) for e in calls] == [("success", 0), ("error", 1)]
    input_required = {**NARADA_BODY, "status": "input-required"}
    assert narada_post(app, input_required).status_code == 401
    assert narada_post(app, input_required, Authorization="tok_new").status_code == 401
    assert narada_post(app, input_required, Authorization="Bearer tok_other").status_code == 401
    wrong_secret = {**input_required, "secret": "x"}
    assert narada_post(app, wrong_secret, Authorization="Bearer tok_new").status_code == 401
    assert len(calls) == 2


def test_narada_token_only_needs_no_secret(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    app = narada_app(make_app, Hooks(provider=Narada(token="tok"), store="memory://"), calls)
    body = {**NARADA_BODY, "secret": None}
    assert narada_post(app, body, Authorization="Bearer tok").status_code == 200
    assert narada_post(app, {**body, "requestId": "r9"}, Authorization="Bearer bad").status_code == 401
    assert len(calls) == 1


def test_narada_token_instance_with_configured_secret_requires_both(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    hooks = Hooks(provider=Narada(token="tok"), store="memory://")
    app = narada_app(make_app, hooks, calls, secret="cb_secret")
    assert narada_post(app, {**NARADA_BODY, "secret": None}, Authorization="Bearer tok").status_code == 401
    assert narada_post(app, NARADA_BODY, Authorization="Bearer tok").status_code == 200


@pytest.mark.parametrize("token", ["t\u00f6k", "tok\u20ac", "tok\u2028", "tok\n", "tok ", "\ttok"])
def test_narada_token_that_no_header_carries_as_it_is_is_a_config_error(token: str) -> None:
    """A server hands a header over as the latin-1 reading of its bytes: a token sent
    as UTF-8 (``tok€`` arrives as ``tokâ\x82¬``) was refused on every delivery."""
    with pytest.raises(ConfigError, match=r"Authorization header.*printable ASCII"):
        Narada(token=token)
    with pytest.raises(ConfigError, match="X-Callback-Token header"):
        Narada(token=["tok_new", token], header="X-Callback-Token", scheme="")
    with pytest.raises(ConfigError, match="printable ASCII"):
        Narada(token="tok").key(token)  # what flask hooks send --secret forges with


def test_narada_body_secret_and_inner_blanks_stay_allowed(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    provider = Narada(token="tok en", secret="s\u00e9cret \u20ac")  # JSON carries any text
    app = narada_app(make_app, Hooks(provider=provider, store="memory://"), calls)
    body = {**NARADA_BODY, "secret": "s\u00e9cret \u20ac"}
    assert narada_post(app, body, Authorization="Bearer tok en").status_code == 200
    assert Narada(secret="s\u00e9cret").key("s\u00e9cret").secret == "s\u00e9cret"  # no token: no header


@pytest.mark.parametrize(
    "body",
    [
        {"secret": "cb_secret"},
        {"secret": "cb_secret", "requestId": "r"},
        {"secret": "cb_secret", "status": "success"},
        {"secret": "cb_secret", "requestId": None, "status": "success"},
    ],
)
def test_narada_parse_needs_request_id_and_status(body: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        Narada().parse(Headers({}), json.dumps(body).encode())


# Noukai -------------------------------------------------------------------


def noukai_mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def test_noukai_timestamp_slot_signs_t_dot_body_and_applies_tolerance() -> None:
    provider = Noukai()
    keys = provider.keys(["nk"])
    body = b'{"event":"job.failed"}'
    header = f"t={NOW},v1={noukai_mac(b'nk', f'{NOW}.'.encode() + body)}"
    verified = provider.verify(Headers({"X-Noukai-Signature": header}), body, keys, now=NOW, tolerance=WIDE)
    assert verified.timestamp == NOW
    with pytest.raises(VerificationError, match="too old"):
        provider.verify(Headers({"X-Noukai-Signature": header}), body, keys, now=NOW + 301, tolerance=WIDE)
    plain = f"v1={noukai_mac(b'nk', body)}"
    unstamped = provider.verify(Headers({"X-Noukai-Signature": plain}), body, keys, now=0, tolerance=WIDE)
    assert unstamped.timestamp is None
    parsed = provider.parse(Headers({"X-Noukai-Delivery": "3f1c-uuid"}), body)
    assert (parsed.id, parsed.type) == ("3f1c-uuid", "job.failed")


def test_noukai_scheme_parts_are_parameters() -> None:
    provider = Noukai(
        signature_header="X-Sig", id_header="X-Id", slots=("s1", "s2"), signed="body", encoding="base64"
    )
    keys = provider.keys(["nk", "nk_old"])
    request = provider.sign(Outgoing("a.b", {}, "d1", NOW), keys[0], previous=keys[1], timestamped=True)
    assert request.headers["X-Sig"].startswith(f"t={NOW},s1=")
    assert ",s2=" in request.headers["X-Sig"]
    verified = provider.verify(Headers(request.headers), request.body, keys[1:], now=0, tolerance=WIDE)
    assert verified.secret_index == 0  # signed="body": the t slot is not checked
    assert provider.parse(Headers(request.headers), request.body).id == "d1"
    strict = Noukai(signed="timestamp.body")
    with pytest.raises(VerificationError, match="timestamp"):
        strict.verify(Headers({"X-Noukai-Signature": "v1=" + "00" * 32}), b"{}", keys, now=0, tolerance=WIDE)



def test_noukai_a_misspelt_mode_is_a_config_error_not_unstamped_signatures() -> None:
    """``signed="timestamp-body"`` once fell through to "auto": deliveries without ``t=`` passed."""
    body = b'{"event":"job.failed"}'
    plain = Headers({"X-Noukai-Signature": f"v1={noukai_mac(b'nk', body)}"})
    for bad in ("timestamp-body", "Timestamp.body", ""):
        with pytest.raises(ConfigError, match="signed"):
            Noukai(signed=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="encoding"):
        Noukai(encoding="base64url")  # type: ignore[arg-type]
    strict = Noukai(signed="timestamp.body")
    with pytest.raises(VerificationError, match="timestamp"):
        strict.verify(plain, body, strict.keys(["nk"]), now=NOW, tolerance=WIDE)


@pytest.mark.parametrize("slots", ["v1", (), ("v1", ""), ("v1", 2)])
def test_noukai_slots_are_a_list_of_names(slots: Any) -> None:
    """A bare string once became its characters: ``slots="v1"`` accepted ``v=`` and ``1=`` slots."""
    with pytest.raises(ConfigError, match="slots"):
        Noukai(slots=slots)

# Generic events (the event types of the archived generic webhooks API) ------------


@pytest.mark.parametrize(
    "type",
    [
        "resource.created",
        "resource.updated",
        "resource.deleted",
        "user.created",
        "user.updated",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
    ],
)
def test_generic_routes_documented_events(make_app: Callable[..., Flask], type: str) -> None:
    hooks = Hooks(store="memory://")
    seen: dict[str, list[Event]] = {"resource": [], "user": [], "payment": []}

    @hooks.on("resource.*")
    def on_resource(event: Event) -> None:
        seen["resource"].append(event)

    @hooks.on("user")
    def on_user(event: Event) -> None:
        seen["user"].append(event)

    @hooks.on("payment.*")
    def on_payment(event: Event) -> None:
        seen["payment"].append(event)

    app = make_app(hooks)
    payload = {
        "data": {"object": {"id": "obj_1", "status": "new"}, "previous_data": {"status": "old"}},
        "created": NOW,
    }
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(Outgoing(type, payload, "evt_" + type, NOW), receiver.keys[0])
    assert app.test_client().post("/webhooks", data=request.body, headers=request.headers).status_code == 200
    family = type.split(".")[0]
    [event] = seen[family]
    assert (event.id, event.type) == ("evt_" + type, type)
    assert event.payload["data"]["previous_data"] == {"status": "old"}
    assert sum(len(v) for v in seen.values()) == 1


# itsdangerous -------------------------------------------------------------


def test_itsdangerous_round_trip_rotation_and_tampering() -> None:
    provider = ItsDangerous()
    keys = provider.keys(["new", "old"])
    request = provider.sign(Outgoing("order.shipped", {"n": 1}, "d1", NOW), keys[1])
    headers = Headers(request.headers)
    verified = provider.verify(headers, request.body, keys, now=NOW, tolerance=WIDE)
    assert (verified.secret_index, verified.timestamp) == (1, NOW)
    with pytest.raises(VerificationError):
        provider.verify(headers, request.body + b" ", keys, now=NOW, tolerance=WIDE)
    with pytest.raises(VerificationError):
        provider.verify(headers, request.body, keys[:1], now=NOW, tolerance=WIDE)
    with pytest.raises(VerificationError, match="too old"):
        provider.verify(headers, request.body, keys, now=NOW + 301, tolerance=WIDE)
    parsed = provider.parse(headers, request.body)
    assert (parsed.id, parsed.type) == ("d1", "order.shipped")


def test_itsdangerous_tokens_are_plain_timestamp_signer_tokens() -> None:
    provider = ItsDangerous(salt="my-salt")
    body = b'{"type":"x"}'
    value = hashlib.sha256(body).hexdigest() + "." + hashlib.sha256(b"d1").hexdigest()
    token = TimestampSigner("k", salt="my-salt").sign(value).decode()
    headers = Headers({"X-Hooks-Signature": token, "X-Hooks-Id": "d1"})
    now = time.time()  # the signer above stamps the real time
    assert provider.verify(headers, body, provider.keys(["k"]), now=now, tolerance=WIDE).secret_index == 0


def test_itsdangerous_token_covers_the_id() -> None:
    provider = ItsDangerous()
    keys = provider.keys(["k"])
    request = provider.sign(Outgoing("order.shipped", {"n": 1}, "d1", NOW), keys[0])
    replayed = {**request.headers, "X-Hooks-Id": "d2"}
    with pytest.raises(VerificationError, match="X-Hooks-Id does not match"):
        provider.verify(Headers(replayed), request.body, keys, now=NOW, tolerance=WIDE)
    without = {k: v for k, v in request.headers.items() if k != "X-Hooks-Id"}
    with pytest.raises(VerificationError, match="missing X-Hooks-Id"):
        provider.verify(Headers(without), request.body, keys, now=NOW, tolerance=WIDE)
    # A body-only token, as before the id was covered, no longer verifies.
    old = TimestampSigner(keys[0], salt=provider.salt).sign(hashlib.sha256(request.body).hexdigest())
    with pytest.raises(VerificationError):
        provider.verify(
            Headers({**request.headers, "X-Hooks-Signature": old.decode()}),
            request.body,
            keys,
            now=time.time(),
            tolerance=WIDE,
        )


def test_itsdangerous_accepts_only_the_canonical_token_spelling() -> None:
    provider = ItsDangerous()
    keys = provider.keys(["k"])
    request = provider.sign(Outgoing("order.shipped", {"n": 1}, "d1", NOW), keys[0])
    token = request.headers["X-Hooks-Signature"]
    # The signature's last base64 character has two unused bits: four spellings decode alike.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twins = [token[:-1] + alphabet[(last & ~3) | bits] for bits in range(4)]
    assert token in twins
    for spelling in [t for t in twins if t != token] + [token[:-3] + "=" + token[-3:], token + "="]:
        with pytest.raises(VerificationError):
            provider.verify(
                Headers({**request.headers, "X-Hooks-Signature": spelling}),
                request.body,
                keys,
                now=NOW,
                tolerance=WIDE,
            )


# Secrets in the wrong format fail at init_app ------------------------------------------


@pytest.mark.parametrize(
    ("provider", "secret"),
    [
        ("standard-webhooks", "whsec_!!!"),
        ("svix", "not base64 at all"),
        ("stripe", " whsec_padded "),
        ("stripe", "whsec_\u00e9"),
        # Slack and Shopify issue ASCII secrets: a blank around one (a newline read from a
        # file) used to be keyed as it was, and every genuine delivery got 401.
        ("slack", "8f742231b10e8888abcd99yyyzzz85a5\n"),
        ("slack", " 8f742231b10e8888abcd99yyyzzz85a5"),
        ("shopify", "shpss_secret\r\n"),
        ("shopify", "shpss_s\u00e9cret"),
    ],
)
def test_wrong_secret_format_is_a_config_error(
    make_app: Callable[..., Flask], provider: str, secret: str
) -> None:
    with pytest.raises(ConfigError):
        make_app(Hooks(provider=provider, secret=secret))


def test_standard_webhooks_accepts_its_whsec_secret(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(provider="svix", secret=WHSEC)
    make_app(hooks)


def test_stripe_keys_are_the_secret_strings() -> None:
    assert Stripe().keys(["whsec_a", "whsec_b"]) == (HmacKey(b"whsec_a"), HmacKey(b"whsec_b"))
