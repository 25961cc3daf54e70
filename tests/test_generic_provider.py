"""The generic preset, sans-I/O: dicts and bytes in, decisions out."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from flask_hooks import ConfigError, PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import Generic, Outgoing

KEYS = Generic().keys(["new-secret", "old-secret"])
BODY = b'{"id":"evt_abc123","type":"resource.created","data":{"object":{"id":"res_1"}}}'


def mac(key: bytes, body: bytes = BODY) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(headers: dict[str, str], body: bytes = BODY) -> int:
    return Generic().verify(Headers(headers), body, KEYS, now=0, tolerance=(300, 300)).secret_index


def test_hex_hmac_of_raw_body_matches_an_independent_computation() -> None:
    assert verify({"X-Webhook-Signature": mac(b"new-secret")}) == 0


def test_sha256_prefix_is_optional_and_header_name_case_insensitive() -> None:
    assert verify({"x-webhook-signature": "sha256=" + mac(b"new-secret")}) == 0
    assert verify({"X-WEBHOOK-SIGNATURE": "SHA256=" + mac(b"new-secret").upper()}) == 0


def test_rotation_reports_the_matching_position() -> None:
    assert verify({"X-Webhook-Signature": mac(b"old-secret")}) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Signature": ""},
        {"X-Webhook-Signature": "zz"},
        {"X-Webhook-Signature": "sha256="},
        {"X-Webhook-Signature": mac(b"unknown")},
        {"X-Webhook-Signature": mac(b"new-secret")[:-2]},
        {"X-Webhook-Signature": "\u00e9\u00e8" * 40},
        {"X-Webhook-Signature": "sha1=" + mac(b"new-secret")},
    ],
)
def test_rejections(headers: dict[str, str]) -> None:
    with pytest.raises(VerificationError):
        verify(headers)


def test_a_signature_for_another_body_is_rejected() -> None:
    with pytest.raises(VerificationError):
        verify({"X-Webhook-Signature": mac(b"new-secret", BODY + b" ")}, BODY)


def test_the_signed_payload_id_wins_over_the_unsigned_header() -> None:
    # A captured body re-sent under a new X-Webhook-Id keeps its dedupe id.
    parsed = Generic().parse(Headers({"X-Webhook-Id": "dlv_9"}), BODY)
    assert (parsed.id, parsed.type) == ("evt_abc123", "resource.created")
    assert Generic().parse(Headers({}), BODY).id == "evt_abc123"


def test_the_id_header_is_the_fallback_for_payloads_without_an_id() -> None:
    for body in (b'{"type":"a"}', b'{"id":null,"type":"a"}'):
        assert Generic().parse(Headers({"X-Webhook-Id": "dlv_9"}), body).id == "dlv_9"
    with pytest.raises(PayloadError, match="id is not a string"):
        Generic().parse(Headers({"X-Webhook-Id": "dlv_9"}), b'{"id":true,"type":"a"}')


@pytest.mark.parametrize("number", [b"1e400", b"2e400", b"-1e400"])
def test_non_finite_numeric_ids_are_refused_not_collapsed_into_inf(number: bytes) -> None:
    # The strict decoder refuses the number itself (require_str's own check stays for other parsers).
    with pytest.raises(PayloadError, match="too large for a float"):
        Generic().parse(Headers({}), b'{"id":' + number + b',"type":"a"}')
    assert Generic().parse(Headers({}), b'{"id":12,"type":"a"}').id == "12"


@pytest.mark.parametrize("number", [b"1.0", b"1e0", b"9007199254740993.0"])
def test_numeric_ids_with_a_fraction_or_an_exponent_are_refused_not_collapsed(number: bytes) -> None:
    # As floats, 1.0 and 1e0 (or ...993.0 and ...992.0) are one value: two deliveries, one id.
    with pytest.raises(PayloadError, match="fraction or an exponent"):
        Generic().parse(Headers({}), b'{"id":' + number + b',"type":"a"}')


def test_an_oversized_id_header_says_too_long_not_missing() -> None:
    with pytest.raises(PayloadError, match=r"^id too long"):
        Generic().parse(Headers({"X-Webhook-Id": "x" * 8000}), b'{"type":"a"}')
    with pytest.raises(PayloadError, match=r"^type too long"):
        Generic().parse(Headers({}), b'{"id":"a","type":"' + b"t" * 513 + b'"}')


@pytest.mark.parametrize(
    "body",
    [b'{"id":"\xed\xa0\x80","type":"a"}', b'{"id":"a","type":"a","note":"\xed\xb0\x80"}',
     '{"id":"a","type":"a"}'.encode("utf-16"), b'\xef\xbb\xbf{"id":"a","type":"a"}'],
)
def test_bodies_are_strict_utf8(body: bytes) -> None:
    # CESU-8 surrogates, UTF-16 and a BOM: json.loads(bytes) accepts all three.
    with pytest.raises(PayloadError, match="body is not"):
        Generic().parse(Headers({}), body)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1,2]", b'{"type":"a"}', b'{"id":"x"}', b'{"id":"x","type":""}',
     b'{"id":null,"type":"a"}', b'{"id":"x","type":NaN}', b"\xff\xfe", b'{"id":true,"type":"a"}'],
)
def test_parse_rejects_what_it_cannot_route(body: bytes) -> None:
    with pytest.raises(PayloadError):
        Generic().parse(Headers({}), body)


def test_sign_round_trips_and_is_what_the_sender_would_send() -> None:
    signed = Generic().sign(Outgoing("user.created", {"data": {"x": 1}}, "evt_1", 0), KEYS[0])
    assert json.loads(signed.body) == {"id": "evt_1", "type": "user.created", "data": {"x": 1}}
    assert signed.headers["X-Webhook-Signature"] == mac(b"new-secret", signed.body)
    assert Generic().verify(Headers(signed.headers), signed.body, KEYS, now=0, tolerance=(0, 0))


def test_custom_header_names() -> None:
    provider = Generic(signature_header="X-Tenant-Signature", id_header="X-Tenant-Delivery")
    body = b'{"type":"a"}'
    headers = Headers({"X-Tenant-Signature": mac(b"old-secret", body), "X-Tenant-Delivery": "d1"})
    assert provider.verify(headers, body, KEYS, now=0, tolerance=(0, 0)).secret_index == 1
    assert provider.parse(headers, body).id == "d1"


def test_empty_secrets_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Generic().keys([""])
