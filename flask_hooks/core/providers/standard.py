"""``standard-webhooks`` and its alias ``svix``.

Headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
(Svix sends ``svix-*``; those win when both spellings are present). The
signature header is a space-separated list of ``v1,<base64>`` entries, one
per active key; other versions (``v1a`` is ed25519) are skipped, not
errors. The signed content is ``id.timestamp.body``; the key is the
base64 that follows ``whsec_`` (decoded here, unlike Stripe's keys); a
secret given as bytes is the key itself, as the senders' libraries take it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Sequence

from ..errors import ConfigError, VerificationError
from ..event import HeaderMap
from ._json import dump, load_object
from ._parsing import MAX_SLOTS, bounded_header
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    b64_text,
    check_timestamp,
    field,
    match_encoded,
    outgoing_payload,
    require_str,
)

PREFIX = "whsec_"


def decode_secret(secret: str | bytes, name: str = "standard-webhooks") -> bytes:
    """``whsec_<base64>`` (or bare base64) -> key bytes; bytes are taken as the raw key.
    ``name``: the preset an error names (``svix`` is this scheme too)."""
    if isinstance(secret, bytes):
        if not secret:
            raise ConfigError(f"{name}: empty secret")
        return secret
    if not isinstance(secret, str) or not secret:
        raise ConfigError(f"{name}: every secret must be a non-empty string")
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    raw = raw.strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{name}: a secret must be 'whsec_' followed by base64 (as the sender shows it)"
        ) from None
    if not key:
        raise ConfigError(f"{name}: nothing follows 'whsec_' in a secret")
    return key


class StandardWebhooks(HmacProvider):
    """The Standard Webhooks spec (HMAC ``v1`` signatures)."""

    name = "standard-webhooks"
    #: Header prefixes, the first present one wins for each header.
    prefixes: tuple[str, ...] = ("svix-", "webhook-")
    #: The prefix :meth:`sign` uses.
    sign_prefix = "webhook-"

    def keys(self, secrets: Sequence[str]) -> tuple[HmacKey, ...]:
        return tuple(HmacKey(decode_secret(secret, self.name)) for secret in secrets)

    def secret_aliases(self, secrets: Sequence[str]) -> tuple[str, ...]:
        """The base64 after ``whsec_`` (what the spec's libraries decode), and the key's own
        bytes when they are text (``Webhook(b"raw-key")``): a handler may quote either."""
        found: list[str] = []
        for secret in secrets:
            found.append(secret.removeprefix(PREFIX).strip())
            key = decode_secret(secret, self.name)
            if key.isascii() and key.decode("ascii").isprintable():
                found.append(key.decode("ascii"))
        return tuple(found)

    def secret_text(self, secret: bytes) -> str:
        """Bytes are the raw key, as the sender's library (``Webhook(b"...")``) takes them:
        spelt ``whsec_<base64>``, the form a dashboard shows and a traceback is blanked of."""
        return PREFIX + base64.b64encode(secret).decode("ascii")

    def _name(self, headers: HeaderMap, suffix: str) -> str | None:
        """The first spelling of a header (``svix-id``, ``webhook-id``) that is present."""
        for prefix in self.prefixes:
            if headers.get(prefix + suffix):
                return prefix + suffix
        return None

    def _header(self, headers: HeaderMap, suffix: str, *, strip: bool = True) -> str:
        name = self._name(headers, suffix)
        if name is None:
            raise VerificationError(f"missing webhook-{suffix} header")
        return bounded_header(headers, name, strip=strip)

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        # Signed as sent, not stripped, as the SDKs do: it is also the dedupe key (see parse),
        # so a blank added to a captured delivery's id fails here instead of making a new id.
        msg_id = self._header(headers, "id", strip=False)
        raw_stamp = self._header(headers, "timestamp")
        entries = self._header(headers, "signature").split(" ", MAX_SLOTS)[:MAX_SLOTS]
        # Each v1 entry's base64 as text, compared with the digest's canonical base64:
        # only the spelling the sender's library writes matches (no padding or junk skipped).
        candidates = []
        for entry in entries:
            version, sep, value = entry.partition(",")
            if sep and version == "v1" and value:
                candidates.append(value)
        if not candidates:
            raise VerificationError("no v1 signature")
        timestamp = check_timestamp(raw_stamp, now=now, tolerance=tolerance)
        index = match_encoded(candidates, keys, f"{msg_id}.{raw_stamp}.".encode("ascii"), body, b64_text)
        return Verified(secret_index=index, timestamp=timestamp)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        name = self._name(headers, "id")
        msg_id = None if name is None else headers.get(name)
        return Parsed(
            id=require_str(msg_id, "webhook-id"),
            type=require_str(field(payload, "type"), "type"),
            payload=payload,
        )

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        """The spec's envelope: ``{"type", "timestamp", "data"}``."""
        when = datetime.datetime.fromtimestamp(outgoing.timestamp, datetime.timezone.utc)
        payload = {
            "type": outgoing.type,
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "data": outgoing_payload(outgoing),
        }
        body = dump(payload)
        mac = b64_text(key.mac(f"{outgoing.id}.{outgoing.timestamp}.".encode(), body))
        p = self.sign_prefix
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                p + "id": outgoing.id,
                p + "timestamp": str(outgoing.timestamp),
                p + "signature": f"v1,{mac}",
            },
        )


class Svix(StandardWebhooks):
    """Svix: Standard Webhooks under ``svix-*`` headers (``webhook-*`` accepted)."""

    name = "svix"
    sign_prefix = "svix-"
