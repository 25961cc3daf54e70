"""``signed_delivery(type, body=b"...")``: the provider signs bytes the test wrote.

Parametrized over the registry, so a preset added later must say what a
body of its own looks like (``BODIES``) or fail here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.core.providers.registry import PRESETS
from flask_hooks.providers import (
    HeaderMap,
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    load_object,
)

WHSEC = ["whsec_" + base64.b64encode(b"n" * 24).decode(), "whsec_" + base64.b64encode(b"o" * 24).decode()]
PLAIN = ["plain-secret-new", "plain-secret-old"]
OVERFLOW = "body has a number too large for a float (infinity is not JSON)"

#: Per preset: the secrets, the type to forge, the exact body, and the id and type the receiver sees.
#: Spacing and key order are deliberately not what the provider's own ``sign`` would write.
BODIES: dict[str, tuple[list[str], str, bytes, str, str]] = {
    "generic": (PLAIN, "order.paid", b'{ "type": "order.paid", "id": "evt_1" }', "evt_1", "order.paid"),
    "noukai": (PLAIN, "job", b'{"event": "job", "output": 1}', "dlv_1", "job"),
    "narada": (
        PLAIN,
        "success",
        b'{"status": "success", "requestId": "req_1", "secret": "plain-secret-new"}',
        "req_1:success",
        "success",
    ),
    "flowstep": (
        PLAIN,
        "step_a",
        b'{"context": {"step_name": "step_a", "request_id": "req_1"}, "data": {"n": 3.0}}',
        "req_1:step_a",
        "step_a",
    ),
    "standard-webhooks": (WHSEC, "order.paid", b'{"type":"order.paid",  "data":{}}', "dlv_1", "order.paid"),
    "svix": (WHSEC, "order.paid", b'{"type":"order.paid",  "data":{}}', "dlv_1", "order.paid"),
    "stripe": (
        WHSEC,
        "invoice.paid",
        b'{"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}',
        "evt_1",
        "invoice.paid",
    ),
    "github": (
        PLAIN,
        "issues.opened",
        b'{"action": "opened", "issue": {"number": 1}}',
        "dlv_1",
        "issues.opened",
    ),
    "shopify": (PLAIN, "orders/create", b'{"id": 820982911946154508}', "dlv_1", "orders/create"),
    "slack": (
        PLAIN,
        "app_mention",
        b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}',
        "Ev1",
        "app_mention",
    ),
    "itsdangerous": (PLAIN, "order.paid", b'{"type": "order.paid"}', "dlv_1", "order.paid"),
}


@pytest.fixture(params=sorted(PRESETS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def handled() -> list[Event]:
    return []


@pytest.fixture
def app(make_app: Callable[..., Flask], provider: str, handled: list[Event]) -> Flask:
    if provider not in BODIES:
        pytest.fail(f"add an exact body for the new preset {provider!r} to BODIES")
    hooks = Hooks(provider=provider, secret=BODIES[provider][0], store="memory://")
    hooks.on("*")(handled.append)
    return make_app(hooks)


def forge(signed_delivery: Any, provider: str, **kwargs: Any) -> Any:
    _, kind, body, _, _ = BODIES[provider]
    return signed_delivery(kind, body=body, id="dlv_1", **kwargs)


def test_the_exact_bytes_are_signed_and_posted(
    provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    _, _, body, want_id, want_type = BODIES[provider]
    delivery = forge(signed_delivery, provider)

    response = delivery.send()

    assert response.status_code == 200, response.data
    if provider == "flowstep":  # body= is the payload member's text; the envelope carries the signature
        assert delivery.body.startswith(b'{"payload":' + body + b',"signature":"')
    else:
        assert delivery.body == body
    assert (delivery.id, delivery.type) == (want_id, want_type)
    assert [(e.id, e.type, e.body) for e in handled] == [(want_id, want_type, delivery.body)]
    assert delivery.resend().json == {"status": "duplicate"}


def test_an_older_secret_signs_the_same_bytes(
    provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    delivery = forge(signed_delivery, provider, secret_index=1)

    assert delivery.send().status_code == 200
    if provider != "narada":  # Narada's position is the body secret's, which the bytes fix at 0
        assert handled[0].secret_index == 1


def test_variants_keep_the_bytes(
    app: Flask, provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    delivery = forge(signed_delivery, provider)

    later = delivery.signed_at(delivery.timestamp + 30)
    assert later.body == delivery.body
    assert later.send().status_code == 200
    if delivery.timestamped:
        assert delivery.stale().body == delivery.body
        assert delivery.stale().send().status_code == 401
    if provider != "narada":  # nothing signs Narada's body
        rejected = app.extensions["hooks"].receivers["hooks"].provider.rejection_status
        assert delivery.tampered().send().status_code == rejected
    assert len(handled) == 1


@pytest.mark.parametrize("provider", ["generic"], indirect=True)
def test_a_body_that_is_no_delivery_is_still_signed(
    provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    for body, reason in [(b"not json", "body is not JSON"), (b'{"id": "evt_1"}', "missing type")]:
        response = signed_delivery("x", body=body).send()
        assert (response.status_code, response.json["reason"]) == (400, reason)
    assert handled == []


@pytest.mark.parametrize("provider", ["generic"], indirect=True)
def test_payload_and_body_are_exclusive(provider: str, signed_delivery: Any) -> None:
    with pytest.raises(TypeError, match="payload= or body=, not both"):
        signed_delivery("order.paid", {"id": "evt_1"}, body=b"{}")
    with pytest.raises(TypeError, match="body= must be bytes, not str"):
        signed_delivery("order.paid", body='{"id": "evt_1"}')
    assert signed_delivery("order.paid", body=bytearray(b'{"id":"e","type":"order.paid"}')).body == (
        b'{"id":"e","type":"order.paid"}'
    )


@pytest.mark.parametrize("provider", sorted(set(PRESETS) - {"flowstep"}), indirect=True)
def test_a_payload_that_is_not_json_is_refused_when_forged(provider: str, signed_delivery: Any) -> None:
    """NaN and infinity are no JSON: a forged body with them only ever got a 400."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        signed_delivery(BODIES[provider][1], {"amount": float("nan")})


@pytest.mark.parametrize("provider", sorted(set(PRESETS) - {"flowstep", "narada"}), indirect=True)
@pytest.mark.parametrize("number", [b"1e999", b"-1E400", b"9" * 400 + b".5"], ids=["1e999", "-1E400", "long"])
def test_a_signed_number_that_overflows_a_float_is_a_400(
    provider: str, signed_delivery: Any, handled: list[Event], number: bytes
) -> None:
    """Python reads it as infinity, which the handler got and no JSON encoder writes back.

    flowstep reads what JavaScript signed (``null``); Narada reads its body
    secret from strict JSON only, so such a body has none (a 401).
    """
    _, kind, body, _, _ = BODIES[provider]
    edited = body.replace(b"{", b'{"n": [' + number + b"], ", 1)
    response = signed_delivery(kind, body=edited, id="dlv_1").send()
    assert (response.status_code, response.json["reason"]) == (400, OVERFLOW)
    assert handled == []
    finite = body.replace(b"{", b'{"n": [1.7976931348623157e308, 1e-999], ', 1)  # the largest; 0.0
    assert signed_delivery(kind, body=finite, id="dlv_2").send().status_code == 200


@pytest.mark.parametrize("provider", ["narada"], indirect=True)
def test_narada_bytes_must_carry_the_body_secret(provider: str, signed_delivery: Any) -> None:
    with pytest.raises(ValueError, match=r"do not verify: invalid secret .*the bytes carry the body secret"):
        signed_delivery("success", body=b'{"requestId": "r", "status": "success", "secret": "guess"}')


@pytest.mark.parametrize("provider", ["flowstep"], indirect=True)
def test_flowstep_signs_javascripts_view_of_the_payload(
    provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    text = (
        b'{"data":{"n":3.0,"gone":1e999,"big":9007199254740993},"context":{"request_id":"r","step_name":"s"}}'
    )

    assert signed_delivery("s", body=text).send().status_code == 200
    assert handled[0].payload["data"] == {"n": 3, "gone": None, "big": 9007199254740992}
    with pytest.raises(ValueError, match="must be the JSON text of the payload"):
        signed_delivery("s", body=b"{oops")


class Opaque(Provider):
    """A custom scheme whose keys are plain bytes: nothing to swap the body into."""

    name = "opaque"

    def verify(
        self, headers: HeaderMap, body: bytes, keys: Sequence[Any], *, now: float, tolerance: Tolerance
    ) -> Verified:
        if headers.get("X-Key") != keys[0].decode():
            from flask_hooks import VerificationError

            raise VerificationError("bad key")
        return Verified()

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        return Parsed(str(payload["id"]), str(payload["type"]), payload)

    def sign(self, outgoing: Outgoing, key: Any) -> SignedRequest:
        return SignedRequest(b"{}", {"X-Key": key.decode()})


class Prefixed(HmacProvider):
    """A custom HMAC scheme: ``X-Mac`` is hex HMAC of ``"v9:" + body``."""

    name = "prefixed"

    def verify(
        self, headers: HeaderMap, body: bytes, keys: Sequence[HmacKey], *, now: float, tolerance: Tolerance
    ) -> Verified:
        from flask_hooks.core.providers.base import match_macs
        from flask_hooks.providers import from_hex

        return Verified(match_macs([from_hex(headers.get("X-Mac") or "") or b""], keys, b"v9:", body))

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        return Parsed(str(payload["id"]), str(payload["type"]), payload)

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        body = b'{"id":"%s","type":"%s"}' % (outgoing.id.encode(), outgoing.type.encode())
        return SignedRequest(body, {"X-Mac": key.mac(b"v9:", body).hex()})


class Concatenating(Prefixed):
    """MACs one joined part: the body cannot be told from its prefix."""

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        body = b'{"id":"%s","type":"%s"}' % (outgoing.id.encode(), outgoing.type.encode())
        return SignedRequest(body, {"X-Mac": key.mac(b"v9:" + body).hex()})


def custom_delivery(make_app: Callable[..., Flask], provider: Provider, body: bytes) -> Any:
    from pytest_hooks.delivery import SignedDelivery, find_receiver

    hooks = Hooks(provider=provider, store="memory://")
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    return SignedDelivery.forge(app, find_receiver(app, None, what="test"), "x", body=body)


def test_custom_providers(make_app: Callable[..., Flask]) -> None:
    body = b'{"type": "x", "id": "evt_9"}'
    assert custom_delivery(make_app, Prefixed(), body).send().status_code == 200
    with pytest.raises(TypeError, match="'opaque': its keys are not HmacKeys"):
        custom_delivery(make_app, Opaque(), body)
    with pytest.raises(TypeError, match="does not MAC the body it builds as the last part"):
        custom_delivery(make_app, Concatenating(), body)


def test_the_fixture_takes_body_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from flask import Flask
        from flask_hooks import Hooks

        @pytest.fixture
        def app(tmp_path):
            app = Flask("user_app", instance_path=str(tmp_path))
            hooks = Hooks(app, provider="stripe", secret="whsec_test", store="memory://")
            hooks.on("invoice.paid")(lambda event: {"got": event.payload["data"]["object"]["id"]})
            return app
        """
    )
    pytester.makepyfile(
        """
        BODY = b'{"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}'

        def test_exact(signed_delivery):
            delivery = signed_delivery("invoice.paid", body=BODY)
            assert delivery.body == BODY
            assert delivery.send().json == {"got": "in_1"}

        def test_nested(signed_delivery):
            delivery = signed_delivery("invoice.paid", {"id": "in_2"})
            assert delivery.send().json == {"got": "in_2"}
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
