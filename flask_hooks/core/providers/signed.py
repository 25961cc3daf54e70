"""``itsdangerous``: Flask-to-Flask webhooks signed with a ``TimestampSigner``.

The sending app signs the SHA-256 hex digest of the body with
:class:`itsdangerous.TimestampSigner` (its own key derivation, salt and
timestamp) and sends the token in ``X-Hooks-Signature``, the delivery id
in ``X-Hooks-Id``. Both apps share ``SECRET``-style keys; a list rotates
them (newest first here; itsdangerous itself lists oldest first, so each
key is tried on its own to report its position). The module is named
``signed`` so that it never shadows the ``itsdangerous`` package.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from itsdangerous import BadData, TimestampSigner

from ..errors import VerificationError
from ..event import Headers
from ._parsing import bounded_header
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    check_timestamp,
    dump,
    field,
    load_object,
    require_str,
)


class _FixedSigner(TimestampSigner):
    """A signer stamping a given time, so tests and the CLI control it."""

    def __init__(self, key: bytes, salt: str, timestamp: int) -> None:
        super().__init__(key, salt=salt)
        self._timestamp = timestamp

    def get_timestamp(self) -> int:
        return self._timestamp


class ItsDangerous(Provider):
    """A token over the body digest in one header; the id in another."""

    name = "itsdangerous"

    def __init__(
        self,
        *,
        signature_header: str = "X-Hooks-Signature",
        id_header: str = "X-Hooks-Id",
        salt: str = "flask-hooks.webhook",
    ) -> None:
        self.signature_header = signature_header
        self.id_header = id_header
        self.salt = salt

    def verify(
        self,
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        token = bounded_header(headers, self.signature_header)
        wanted = hashlib.sha256(body).hexdigest().encode("ascii")
        for index, key in enumerate(keys):
            try:
                value, signed_at = TimestampSigner(key, salt=self.salt).unsign(token, return_timestamp=True)
            except (BadData, ValueError, OverflowError, OSError):
                continue
            if not hmac.compare_digest(value, wanted):
                raise VerificationError("body does not match its signed digest")
            stamp = check_timestamp(str(int(signed_at.timestamp())), now=now, tolerance=tolerance)
            return Verified(secret_index=index, timestamp=stamp)
        raise VerificationError("signature mismatch")

    def parse(self, headers: Headers, body: bytes) -> Parsed:
        payload = load_object(body)
        return Parsed(
            id=require_str(headers.get(self.id_header), self.id_header),
            type=require_str(field(payload, "type"), "type"),
            payload=payload,
        )

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        payload = outgoing.payload if outgoing.payload is not None else {}
        if isinstance(payload, dict):
            payload = {"type": outgoing.type, **payload}
        body = dump(payload)
        signer = _FixedSigner(key, self.salt, outgoing.timestamp)
        token = signer.sign(hashlib.sha256(body).hexdigest()).decode("ascii")
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                self.signature_header: token,
                self.id_header: outgoing.id,
            },
        )
