"""``generic``: hex HMAC-SHA256 of the raw body, no timestamp.

Senders using this common scheme name their headers differently (often
``X-Webhook-Signature``), so the header names are parameters and a
tenant's own spelling is one argument. The dedupe id is the payload's
``id``, which the signature covers; the id header is only a fallback for
payloads without one, and it is not signed.
"""

from __future__ import annotations

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
    field,
    load_object,
    match_body_mac,
    require_str,
)


class Generic(Provider):
    """Hex HMAC-SHA256 of the body in one header, optionally ``sha256=``-prefixed."""

    name = "generic"

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
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        # Hex in either case, compared as lowercase text: cheaper than decoding it.
        value = bounded_header(headers, self.signature_header).lower()
        if self.prefix and value.startswith(self.prefix):
            value = value[len(self.prefix) :]
        return match_body_mac(value, body, keys, bytes.hex)

    def parse(self, headers: Headers, body: bytes) -> Parsed:
        """The signed payload ``id`` wins: a captured body re-sent under a new id header stays a duplicate."""
        payload = load_object(body)
        delivery = field(payload, "id")
        if delivery is None:
            delivery = headers.get(self.id_header)
        return Parsed(require_str(delivery, "id"), require_str(field(payload, "type"), "type"), payload)

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        payload = outgoing.payload if outgoing.payload is not None else {}
        if isinstance(payload, dict):
            payload = {"id": outgoing.id, "type": outgoing.type, **payload}
        body = dump(payload)
        digest = hmac.new(key, body, hashlib.sha256).hexdigest()
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                self.signature_header: digest,
                self.id_header: outgoing.id,
            },
        )
