"""``shopify``: ``X-Shopify-Hmac-Sha256``, base64 HMAC-SHA256 of the raw body.

No timestamp is signed (``X-Shopify-Triggered-At`` is informational).
``X-Shopify-Webhook-Id`` is the idempotency key and ``X-Shopify-Topic``
(``orders/create``) the type, verbatim. After a client-secret rotation
Shopify may sign with the old secret for up to an hour: configure both.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..event import HeaderMap
from ._json import dump, load_json
from ._parsing import bounded_header
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    b64_text,
    check_issued,
    match_body_mac,
    outgoing_payload,
    require_str,
)

HEADER = "X-Shopify-Hmac-Sha256"


class Shopify(HmacProvider):
    """Shopify app webhooks (HTTPS subscriptions)."""

    name = "shopify"
    signs_timestamp = False

    def keys(self, secrets: Sequence[str]) -> tuple[HmacKey, ...]:
        check_issued(self.name, secrets, "the app's client secret")
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
        return match_body_mac(bounded_header(headers, HEADER), body, keys, b64_text)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        return Parsed(
            id=require_str(headers.get("X-Shopify-Webhook-Id"), "X-Shopify-Webhook-Id"),
            type=require_str(headers.get("X-Shopify-Topic"), "X-Shopify-Topic"),
            payload=load_json(body),
        )

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        body = dump(outgoing_payload(outgoing))
        mac = b64_text(key.mac(body))
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                HEADER: mac,
                "X-Shopify-Topic": outgoing.type,
                "X-Shopify-Webhook-Id": outgoing.id,
                "X-Shopify-Shop-Domain": "example.myshopify.com",
                "X-Shopify-API-Version": "2024-10",
            },
        )
