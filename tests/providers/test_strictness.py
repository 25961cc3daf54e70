"""One spelling per signature, UTF-8 bodies, usable ids, constant-time credentials: every preset."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from typing import Any

import pytest

from flask_hooks.core.errors import PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import FlowStep, GitHub, Narada, Noukai, Outgoing, Provider, Slack, Stripe
from flask_hooks.core.providers._parsing import from_base64, from_hex
from flask_hooks.core.providers.base import MAX_ID, require_str
from flask_hooks.core.providers.standard import StandardWebhooks

from .samples import NOW, Case, case_id, cases, replaced, signed

CASES = cases()
WIDE = (300.0, 300.0)
KEY = b"nk_new"
BODY = b'{"type":"job.completed","amount":100}'


def noukai_headers(value: str) -> Headers:
    return Headers({"X-Noukai-Signature": value, "X-Noukai-Delivery": "d1"})


# Signature encodings ---------------------------------------------------------


@pytest.mark.parametrize("inside", [" ", "\r\n", "\t", "\n", "  "])
def test_noukai_hex_with_whitespace_inside_is_rejected(inside: str) -> None:
    digest = hmac.new(KEY, BODY, hashlib.sha256).hexdigest()
    keys = Noukai().keys(["nk_new"])
    assert Noukai().verify(noukai_headers("v1=" + digest), BODY, keys, now=NOW, tolerance=WIDE)
    spaced = digest[:32] + inside + digest[32:]
    with pytest.raises(VerificationError):
        Noukai().verify(noukai_headers("v1=" + spaced), BODY, keys, now=NOW, tolerance=WIDE)


def test_stripe_hex_with_whitespace_inside_is_rejected() -> None:
    digest = hmac.new(b"whsec_test_secret", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    keys = Stripe().keys(["whsec_test_secret"])
    good = Headers({"Stripe-Signature": f"t={NOW},v1={digest}"})
    assert Stripe().verify(good, BODY, keys, now=NOW, tolerance=WIDE)
    for inside in (" ", "\r\n"):
        bad = Headers({"Stripe-Signature": f"t={NOW},v1={digest[:10]}{inside}{digest[10:]}"})
        with pytest.raises(VerificationError, match="signature mismatch"):
            Stripe().verify(bad, BODY, keys, now=NOW, tolerance=WIDE)


def test_stripe_hex_in_upper_case_verifies() -> None:
    digest = hmac.new(b"whsec_test_secret", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    keys = Stripe().keys(["whsec_test_secret"])
    upper = Headers({"Stripe-Signature": f"t={NOW},v1={digest.upper()}"})
    assert Stripe().verify(upper, BODY, keys, now=NOW, tolerance=WIDE)


def _unused_bit_twin(value: str) -> str:
    """The same bytes spelled with a non-zero unused bit in the last base64 character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data = value.rstrip("=")
    twin = data[:-1] + alphabet[alphabet.index(data[-1]) ^ 1] + value[len(data) :]
    assert base64.b64decode(twin) == base64.b64decode(value) and twin != value
    return twin


def test_standard_webhooks_base64_must_be_canonical() -> None:
    # The Standard Webhooks SDK's published test vector.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    provider = StandardWebhooks()
    keys = provider.keys([secret])
    body = b'{"test": 2432232314}'

    def headers(sig: str) -> Headers:
        return Headers(
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": sig,
            }
        )

    assert provider.verify(headers("v1," + signature), body, keys, now=1614265330, tolerance=WIDE)
    for bad in (_unused_bit_twin(signature), signature.rstrip("="), signature[:20] + " " + signature[20:]):
        with pytest.raises(VerificationError):
            provider.verify(headers("v1," + bad), body, keys, now=1614265330, tolerance=WIDE)


def test_noukai_base64_must_be_canonical() -> None:
    provider = Noukai(encoding="base64")
    mac = base64.b64encode(hmac.new(KEY, BODY, hashlib.sha256).digest()).decode()
    keys = provider.keys(["nk_new"])
    assert provider.verify(noukai_headers("v1=" + mac), BODY, keys, now=NOW, tolerance=WIDE)
    for bad in (_unused_bit_twin(mac), mac[:8] + "\r\n" + mac[8:], mac.rstrip("=")):
        with pytest.raises(VerificationError):
            provider.verify(noukai_headers("v1=" + bad), BODY, keys, now=NOW, tolerance=WIDE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00ff", b"\x00\xff"),
        ("00FF", b"\x00\xff"),
        ("", None),
        ("0", None),
        ("00 ff", None),
        ("00\r\nff", None),
        (" 00ff", None),
        ("00ff\n", None),
        ("0g", None),
        ("\u0660\u0660", None),
    ],
)
def test_from_hex_is_strict(value: str, expected: bytes | None) -> None:
    assert from_hex(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("AA==", b"\x00"),
        ("AAA=", b"\x00\x00"),
        ("AAAA", b"\x00\x00\x00"),
        ("AB==", None),
        ("AA", None),
        ("", None),
        ("AA==AA==", None),
        ("A A=", None),
        ("AA=\n", None),
        ("-_==", None),
        ("=AA=", None),
    ],
)
def test_from_base64_is_strict_and_canonical(value: str, expected: bytes | None) -> None:
    assert from_base64(value) == expected


def _with_whitespace_inside(value: str) -> list[str]:
    middle = len(value) // 2 + 3
    return [value[:middle] + inside + value[middle:] for inside in (" ", "\r\n", "\t")]


def _signature_header(case: Case) -> str:
    assert case.auth
    return next((h for h in case.auth if "sig" in h.lower() or "hmac" in h.lower()), case.auth[0])


@pytest.mark.parametrize("case", [c for c in CASES if c.auth], ids=case_id)
def test_no_preset_accepts_whitespace_inside_its_signature(case: Case) -> None:
    headers, body, keys = signed(case)
    name = _signature_header(case)
    for value in _with_whitespace_inside(headers[name]):
        with pytest.raises(VerificationError):
            case.provider.verify(replaced(headers, **{name: value}), body, keys, now=NOW, tolerance=WIDE)


# Bodies and ids ----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("raw", [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xff"])
def test_every_preset_refuses_bodies_that_are_not_utf8(case: Case, raw: bytes) -> None:
    headers, body, _ = signed(case)
    broken = body.replace(b"100", b'"' + raw + b'"', 1)
    assert broken != body
    with pytest.raises(PayloadError, match="not UTF-8"):
        case.provider.parse(headers, broken)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e400, 1.0, 9007199254740993.0])
def test_ids_that_are_not_whole_numbers_are_refused(value: float) -> None:
    # Read as floats, 1.0 and 1e0 (or ...993.0 and ...992.0) would be one id.
    with pytest.raises(PayloadError, match="event_id is a number with a fraction or an exponent"):
        require_str(value, "event_id")


def test_whole_number_ids_are_kept_as_written() -> None:
    assert require_str(9007199254740993, "id") == "9007199254740993"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing id"),
        ("", "missing id"),
        (True, "id is not a string"),
        ({}, "id is not a string"),
        ([], "id is not a string"),
        ("x" * 513, "id too long (over 512 characters)"),
        (10**600, "id too long (over 512 characters)"),
    ],
)
def test_id_reasons_say_what_is_wrong(value: Any, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        require_str(value, "id")
    assert info.value.reason == reason
    assert require_str("x" * 512, "id") == "x" * 512
    assert require_str(15, "id") == "15"


def test_an_oversized_header_id_says_too_long_in_every_header_id_preset() -> None:
    long = "x" * 8000
    for case in CASES:
        if case.name == "generic":  # the signed payload id wins there; see test_generic_provider
            continue
        headers, body, _ = signed(case)
        id_headers = [h for h in case.headers if h.lower().endswith(("-id", "-delivery"))]
        for name in id_headers:
            with pytest.raises(PayloadError, match="too long"):
                case.provider.parse(replaced(headers, **{name: long}), body)


def _signed_parse(provider: Provider, secret: str, outgoing: Outgoing) -> Any:
    request = provider.sign(outgoing, provider.keys([secret])[0])
    return provider.parse(Headers(request.headers), request.body)


_HALF = MAX_ID // 2 + 10  # each field within the limit, the two joined over it


@pytest.mark.parametrize(
    ("parse", "what"),
    [
        (lambda: _signed_parse(Narada(), "s", Outgoing("s" * _HALF, {}, "r" * _HALF, NOW)), "id"),
        (lambda: _signed_parse(FlowStep(), "k", Outgoing("s" * _HALF, {}, "r" * _HALF, NOW)), "id"),
        (lambda: _signed_parse(GitHub(), "k", Outgoing("issues." + "a" * MAX_ID, {}, "g1", NOW)), "type"),
        (lambda: Slack().parse(Headers({}), b"trigger_id=t&command=/" + b"c" * (MAX_ID - 1)), "type"),
        (
            lambda: Slack().parse(
                Headers({}), b'{"type":"app_rate_limited","minute_rate_limited":"' + b"9" * MAX_ID + b'"}'
            ),
            "id",
        ),
        (
            lambda: Slack().parse(
                Headers({}), b"payload=" + json.dumps({"type": "b" * MAX_ID, "trigger_id": "t"}).encode()
            ),
            "type",
        ),
    ],
    ids=["narada", "flowstep", "github", "slack-command", "slack-rate-limited", "slack-interactive"],
)
def test_ids_and_types_joined_from_two_fields_are_held_to_the_limit(parse: Any, what: str) -> None:
    # A key over MAX_ID, of characters UTF-8 spends 3 bytes on, is over PostgreSQL's index
    # row limit: a 503 on every retry there, rather than the 400 a bad id gets.
    with pytest.raises(PayloadError) as info:
        parse()
    assert info.value.reason == f"{what} too long (over {MAX_ID} characters)"


# Credentials -----------------------------------------------------------------------


def test_narada_compares_every_credential_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    provider = Narada(token=["tok_new", "tok_old"], secret="cb_secret")
    body = json.dumps({"requestId": "r1", "secret": "cb_secret", "status": "success"}).encode()
    headers = Headers({"Authorization": "Bearer tok_old"})
    keys = provider.keys([])
    assert provider.verify(headers, body, keys, now=NOW, tolerance=WIDE).secret_index == 1
    assert (b"tok_old", b"tok_new") in seen and (b"tok_old", b"tok_old") in seen
    assert (b"cb_secret", b"cb_secret") in seen
    sign = Outgoing("success", {}, "r1", NOW)
    assert provider.sign(sign, keys[0]).headers["Authorization"] == "Bearer tok_new"


@pytest.mark.parametrize("spelling", ["msg_1 ", " msg_1", "msg_1\t", "\x1cmsg_1"])
def test_standard_webhooks_id_is_verified_as_it_is_deduplicated(spelling: str) -> None:
    # The id is signed and it is the dedupe key: a captured delivery re-sent with a blank
    # added to its id must not verify (it would be deduplicated as another delivery).
    provider = StandardWebhooks()
    keys = provider.keys(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    request = provider.sign(Outgoing("order.created", {"n": 1}, "msg_1", int(NOW)), keys[0])
    headers = dict(request.headers)
    assert provider.verify(Headers(headers), request.body, keys, now=NOW, tolerance=WIDE)
    headers["webhook-id"] = spelling
    with pytest.raises(VerificationError):
        provider.verify(Headers(headers), request.body, keys, now=NOW, tolerance=WIDE)


@pytest.mark.parametrize("escape", [b"%FF", b"%ED%A0%80", b"%C3"])
def test_slack_form_fields_that_are_not_utf8_are_refused(escape: bytes) -> None:
    # Slack sends UTF-8; a field that is not would reach the handler as U+FFFD, unsigned.
    with pytest.raises(PayloadError) as info:
        Slack().parse(Headers({}), b"trigger_id=t1&command=/deploy&text=" + escape)
    assert info.value.reason == "body is neither JSON nor a form"
    parsed = Slack().parse(Headers({}), b"trigger_id=t1&command=/deploy&text=%C3%A9")
    assert parsed.payload["text"] == "\u00e9"


@pytest.mark.parametrize(
    ("now", "tolerance"), [(NOW, (math.nan, math.nan)), (NOW, (300.0, math.nan)), (math.nan, (300.0, 300.0))]
)
def test_check_timestamp_fails_closed_on_nan(now: float, tolerance: tuple[float, float]) -> None:
    """The core's public check: ``init_app`` refuses a NaN tolerance, a caller of the core
    may not; a 1970 timestamp passed every comparison with a NaN."""
    from flask_hooks.core.providers.base import check_timestamp

    with pytest.raises(VerificationError):
        check_timestamp("1", now=now, tolerance=tolerance)
    assert check_timestamp(str(int(NOW)), now=NOW, tolerance=(300.0, 300.0)) == int(NOW)
