"""The providers' HMAC is the standard library's HMAC-SHA256, for every key length."""

from __future__ import annotations

import base64
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_hooks.core.errors import VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import Generic
from flask_hooks.core.providers.base import HmacKey, b64_text, match_body_mac, match_encoded, match_macs

#: Secrets a sender may configure: any text that is valid UTF-8, 1 to 1000 characters.
SECRETS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=1000)


@given(key=st.binary(min_size=1, max_size=1000), prefix=st.binary(max_size=80), body=st.binary(max_size=300))
def test_hmac_key_is_hmac_sha256(key: bytes, prefix: bytes, body: bytes) -> None:
    mac = HmacKey(key)
    assert mac.mac(prefix, body) == hmac.digest(key, prefix + body, "sha256")
    # The keyed state is copied, never consumed: a second message starts afresh.
    assert mac.mac(body) == hmac.digest(key, body, "sha256")


@given(secret=SECRETS, body=st.binary(max_size=300))
def test_a_provider_accepts_what_hmac_digest_signs(secret: str, body: bytes) -> None:
    keys = Generic().keys([secret])
    header = hmac.digest(secret.encode("utf-8"), body, "sha256").hex()
    verified = Generic().verify(Headers({"X-Webhook-Signature": header}), body, keys, now=0, tolerance=(0, 0))
    assert verified.secret_index == 0


@pytest.mark.parametrize("size", [1, 63, 64, 65, 128, 1000])
def test_key_lengths_around_the_block_size(size: int) -> None:
    key = (bytes(range(256)) * 4)[:size]
    assert HmacKey(key).mac(b"", b"body") == hmac.digest(key, b"body", "sha256")


def test_keys_compare_by_secret_and_never_show_it() -> None:
    assert HmacKey(b"s3cret") == HmacKey(b"s3cret") != HmacKey(b"other")
    assert "s3cret" not in repr(HmacKey(b"s3cret"))


def test_body_mac_matches_hex_and_base64_text() -> None:
    keys = (HmacKey(b"new"), HmacKey(b"old"))
    body = b'{"id":"1"}'
    digest = hmac.digest(b"old", b"v0:1:" + body, "sha256")
    assert match_body_mac(digest.hex(), body, keys, bytes.hex, prefix=b"v0:1:").secret_index == 1

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    stamped = match_body_mac(b64(digest), body, keys, b64, prefix=b"v0:1:", timestamp=1.0)
    assert stamped == (1, 1.0)
    with pytest.raises(VerificationError):
        match_body_mac(digest.hex().upper(), body, keys, bytes.hex, prefix=b"v0:1:")
    with pytest.raises(VerificationError):
        match_body_mac(digest.hex(), body + b" ", keys, bytes.hex, prefix=b"v0:1:")


def test_match_macs_tries_every_candidate_and_key() -> None:
    keys = (HmacKey(b"a"), HmacKey(b"b"), HmacKey(b"c"))
    good = hmac.digest(b"c", b"p.body", "sha256")
    assert match_macs([b"x" * 32, good], keys, b"p.", b"body") == 2
    with pytest.raises(VerificationError):
        match_macs([b"x" * 32], keys, b"p.", b"body")


def test_match_encoded_tries_every_candidate_and_key_in_their_own_spelling() -> None:
    keys = (HmacKey(b"a"), HmacKey(b"b"), HmacKey(b"c"))
    good = hmac.digest(b"c", b"p.body", "sha256")
    assert match_encoded(["x" * 64, good.hex()], keys, b"p.", b"body", bytes.hex) == 2
    assert match_encoded([b64_text(good)], keys, b"p.", b"body", b64_text) == 2
    # Only the spelling the sender writes: no other case, no missing padding, nothing inside.
    for other in (good.hex().upper(), b64_text(good).rstrip("="), good.hex()[:8] + " " + good.hex()[8:]):
        with pytest.raises(VerificationError):
            match_encoded([other], keys, b"p.", b"body", bytes.hex if len(other) > 50 else b64_text)
