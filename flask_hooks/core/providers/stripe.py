"""``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``.

The signed content is ``t.body``, HMAC-SHA256 in hex. The key is the
whole secret string, ``whsec_`` included, as UTF-8: Stripe does not
base64-decode it (Standard Webhooks does; that code is not shared).
Several ``v1`` entries appear while a rolled secret is still alive; any
may match. ``v0`` and unknown entries are ignored. Stripe's own helper
checks only the past (300 s); the receiver's ``(past, future)``
tolerance applies here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError, VerificationError
from ..event import HeaderMap
from ._json import dump, load_object
from ._parsing import bounded_header, parse_slots
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    check_issued,
    check_timestamp,
    field,
    match_encoded,
    outgoing_payload,
    require_str,
)

HEADER = "Stripe-Signature"
#: The prefixes of Stripe's API keys (secret, restricted, publishable), never a webhook secret.
_API_KEYS = ("sk_", "rk_", "pk_")


class Stripe(HmacProvider):
    """Stripe webhook endpoints (``whsec_...`` signing secrets)."""

    name = "stripe"

    def keys(self, secrets: Sequence[str]) -> tuple[HmacKey, ...]:
        check_issued(self.name, secrets, "whsec_...")
        for secret in secrets:
            # An API key pasted for the endpoint's secret: every delivery would be a 401.
            if isinstance(secret, str) and secret.startswith(_API_KEYS):
                raise ConfigError(
                    "stripe: the secret is the endpoint's signing secret (whsec_...), not an API key"
                )
            if secret == "whsec_":
                raise ConfigError("stripe: nothing follows 'whsec_' in a secret")
        return super().keys(secrets)

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        slots = parse_slots(bounded_header(headers, HEADER))
        stamps = [value for key, value in slots if key == "t"]
        candidates = [value.lower() for key, value in slots if key == "v1"]  # hex, compared as text
        if not stamps:
            raise VerificationError("missing timestamp")
        if not candidates:
            raise VerificationError("no v1 signature")
        timestamp = check_timestamp(stamps[0], now=now, tolerance=tolerance)
        index = match_encoded(candidates, keys, stamps[0].encode("ascii") + b".", body, bytes.hex)
        return Verified(secret_index=index, timestamp=timestamp)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        return Parsed(
            id=require_str(field(payload, "id"), "id"),
            type=require_str(field(payload, "type"), "type"),
            payload=payload,
        )

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        """A Stripe ``event`` object whose ``data.object`` is the payload."""
        payload = {
            "id": outgoing.id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": outgoing.timestamp,
            "type": outgoing.type,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": outgoing_payload(outgoing)},
        }
        body = dump(payload)
        mac = key.mac(f"{outgoing.timestamp}.".encode(), body).hex()
        return SignedRequest(
            body=body,
            headers={"Content-Type": "application/json", HEADER: f"t={outgoing.timestamp},v1={mac}"},
        )
