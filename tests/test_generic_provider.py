"""The generic preset, sans-I/O: dicts and bytes in, decisions out."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from flask_hooks import ConfigError, PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import Generic, Outgoing

KEYS = (b"new-secret", b"old-secret")
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


def test_parse_takes_id_from_header_else_payload() -> None:
    parsed = Generic().parse(Headers({}), BODY)
    assert (parsed.id, parsed.type) == ("evt_abc123", "resource.created")
    parsed = Generic().parse(Headers({"X-Webhook-Id": "dlv_9"}), BODY)
    assert parsed.id == "dlv_9"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1,2]", b'{"type":"a"}', b'{"id":"x"}', b'{"id":"x","type":""}',
     b'{"id":null,"type":"a"}', b'{"id":"x","type":NaN}', b"\xff\xfe", b'{"id":true,"type":"a"}'],
)
def test_parse_rejects_what_it_cannot_route(body: bytes) -> None:
    with pytest.raises(PayloadError):
        Generic().parse(Headers({}), body)


def test_sign_round_trips_and_is_what_the_sender_would_send() -> None:
    signed = Generic().sign(Outgoing("user.created", {"data": {"x": 1}}, "evt_1", 0), b"new-secret")
    assert json.loads(signed.body) == {"id": "evt_1", "type": "user.created", "data": {"x": 1}}
    assert signed.headers["X-Webhook-Signature"] == mac(b"new-secret", signed.body)
    assert Generic().verify(Headers(signed.headers), signed.body, KEYS, now=0, tolerance=(0, 0))


def test_custom_header_names() -> None:
    provider = Generic(signature_header="X-Tenant-Signature", id_header="X-Tenant-Delivery")
    headers = Headers({"X-Tenant-Signature": mac(b"old-secret"), "X-Tenant-Delivery": "d1"})
    assert provider.verify(headers, BODY, KEYS, now=0, tolerance=(0, 0)).secret_index == 1
    assert provider.parse(headers, BODY).id == "d1"


def test_empty_secrets_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Generic().keys([""])
