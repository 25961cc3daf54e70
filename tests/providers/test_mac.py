"""The shared HMAC helpers equal the standard library's HMAC for every key length."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_hooks.core.errors import VerificationError
from flask_hooks.core.providers.base import _mac, match_body_mac, match_macs


@given(key=st.binary(min_size=1, max_size=200), prefix=st.binary(max_size=80), body=st.binary(max_size=300))
def test_mac_is_hmac_sha256(key: bytes, prefix: bytes, body: bytes) -> None:
    assert _mac(key, prefix, body) == hmac.digest(key, prefix + body, "sha256")


@pytest.mark.parametrize("size", [1, 63, 64, 65, 128, 1000])
def test_key_lengths_around_the_block_size(size: int) -> None:
    key = bytes(range(256)) * 4
    assert _mac(key[:size], b"", b"body") == hmac.digest(key[:size], b"body", "sha256")


def test_body_mac_matches_text_bytes_and_raw_digests() -> None:
    keys = (b"new", b"old")
    body = b'{"id":"1"}'
    digest = hmac.digest(b"old", b"v0:1:" + body, "sha256")
    assert match_body_mac(digest.hex(), body, keys, bytes.hex, prefix=b"v0:1:").secret_index == 1
    assert match_body_mac(base64.b64encode(digest), body, keys, base64.b64encode, prefix=b"v0:1:")
    stamped = match_body_mac(digest, body, keys, prefix=b"v0:1:", timestamp=1.0)
    assert stamped == (1, 1.0)
    with pytest.raises(VerificationError):
        match_body_mac(digest.hex().upper(), body, keys, bytes.hex, prefix=b"v0:1:")
    with pytest.raises(VerificationError):
        match_body_mac(digest, body + b" ", keys, prefix=b"v0:1:")


def test_match_macs_tries_every_candidate_and_key() -> None:
    keys = (b"a", b"b", b"c")
    good = hmac.new(b"c", b"p.body", hashlib.sha256).digest()
    assert match_macs([b"x" * 32, good], keys, b"p.", b"body") == 2
    with pytest.raises(VerificationError):
        match_macs([b"x" * 32], keys, b"p.", b"body")
