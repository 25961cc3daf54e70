"""``generic``: hex HMAC-SHA256 of the raw body, no timestamp.

Senders using this common scheme name their headers differently (often
``X-Webhook-Signature``), so the header names are parameters and a
tenant's own spelling is one argument. The dedupe id is the payload's
``id``, which the signature covers; the id header is only a fallback for
payloads without one, and it is not signed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..event import HeaderMap
from ._json import dump, load_object
from ._parsing import bounded_header
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    field,
    match_body_mac,
    outgoing_payload,
    require_str,
)


class Generic(HmacProvider):
    """Hex HMAC-SHA256 of the body in one header, optionally ``sha256=``-prefixed."""

    name = "generic"
    signs_timestamp = False

    def __init__(
        self,
        *,
        signature_header: str = "X-Webhook-Signature",
        id_header: str = "X-Webhook-Id",
        prefix: str = "sha256=",
    ) -> None:
        self.signature_header = signature_header
        self.id_header = id_header
        self.prefix = prefix.lower()  # matched case-insensitively

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        # Hex in either case, compared as lowercase text.
        value = bounded_header(headers, self.signature_header).lower()
        if self.prefix and value.startswith(self.prefix):
            value = value[len(self.prefix) :]
        return match_body_mac(value, body, keys, bytes.hex)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        """The signed payload ``id`` wins: a captured body re-sent under a new id header stays a duplicate."""
        payload = load_object(body)
        delivery = field(payload, "id")
        if delivery is None:
            delivery = headers.get(self.id_header)
        return Parsed(require_str(delivery, "id"), require_str(field(payload, "type"), "type"), payload)

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        body = dump(outgoing_payload(outgoing, id=outgoing.id, type=outgoing.type))
        digest = key.mac(body).hex()
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                self.signature_header: digest,
                self.id_header: outgoing.id,
            },
        )
