"""``shopify``: ``X-Shopify-Hmac-Sha256``, base64 HMAC-SHA256 of the raw body.

No timestamp is signed (``X-Shopify-Triggered-At`` is informational).
``X-Shopify-Webhook-Id`` is the idempotency key and ``X-Shopify-Topic``
(``orders/create``) the type, verbatim. After a client-secret rotation
Shopify may sign with the old secret for up to an hour: configure both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from ..event import Headers
from ._parsing import bounded_header
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    dump,
    load_json,
    match_body_mac,
    require_str,
)

HEADER = "X-Shopify-Hmac-Sha256"


class Shopify(Provider):
    """Shopify app webhooks (HTTPS subscriptions)."""

    name = "shopify"

    def verify(
        self,
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        given = bounded_header(headers, HEADER).encode("ascii")  # ASCII: checked
        return match_body_mac(given, body, keys, base64.b64encode)

    def parse(self, headers: Headers, body: bytes) -> Parsed:
        return Parsed(
            id=require_str(headers.get("X-Shopify-Webhook-Id"), "X-Shopify-Webhook-Id"),
            type=require_str(headers.get("X-Shopify-Topic"), "X-Shopify-Topic"),
            payload=load_json(body),
        )

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        body = dump(outgoing.payload if outgoing.payload is not None else {})
        mac = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")
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
