"""``itsdangerous``: Flask-to-Flask webhooks signed with a ``TimestampSigner``.

The sending app signs ``<sha256 hex of the body>.<sha256 hex of the id>``
with :class:`itsdangerous.TimestampSigner` (its own key derivation, salt
and timestamp) and sends the token in ``X-Hooks-Signature``, the delivery
id in ``X-Hooks-Id``. The id is covered so that a captured request re-sent
under a new id is refused rather than run again. Both apps share
``SECRET``-style keys; a list rotates them (newest first here;
itsdangerous itself lists oldest first, so each key is tried on its own
to report its position). The module is named ``signed`` so that it never
shadows the ``itsdangerous`` package, and imports that package only when a
token is checked or made: importing the core needs the standard library
alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import VerificationError
from ..event import HeaderMap
from ._json import dump, load_object
from ._parsing import MAX_HEADER, bounded_header
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    check_timestamp,
    field,
    outgoing_payload,
    require_str,
)

if TYPE_CHECKING:
    from itsdangerous import TimestampSigner

#: The only token shape :meth:`ItsDangerous.sign` makes: two hex digests, then
#: itsdangerous's unpadded URL-safe base64 timestamp and signature. itsdangerous
#: decodes base64 leniently (junk characters skipped), so the shape is checked first.
_TOKEN = re.compile(r"[0-9a-f]{64}\.[0-9a-f]{64}\.[A-Za-z0-9_-]{1,16}\.[A-Za-z0-9_-]{16,128}")


def _canonical(token: str) -> bool:
    """Whether the token has the shape above, its base64 spelled as itsdangerous writes it.

    The last base64 character carries unused bits; without this check
    each genuine token would have several spellings that all verify.
    """
    from itsdangerous import BadData
    from itsdangerous.encoding import base64_decode, base64_encode

    if not _TOKEN.fullmatch(token):
        return False
    parts = token.encode("ascii").rsplit(b".", 2)[1:]
    try:
        return all(base64_encode(base64_decode(part)) == part for part in parts)
    except BadData:  # a length no base64 has
        return False


def signed_value(delivery_id: str, body: bytes) -> bytes:
    """What the token signs: the body's and the id's SHA-256, hex, dot-joined."""
    id_digest = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{hashlib.sha256(body).hexdigest()}.{id_digest}".encode("ascii")


def _signer_at(key: bytes, salt: str, timestamp: int) -> TimestampSigner:
    """A signer stamping ``timestamp``, so tests and the CLI control the time."""
    from itsdangerous import TimestampSigner

    class FixedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return FixedSigner(key, salt=salt)


class ItsDangerous(Provider):
    """A token over the body and id digests in one header; the id in another."""

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
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        from itsdangerous import BadData, TimestampSigner

        token = bounded_header(headers, self.signature_header)
        if not _canonical(token):
            raise VerificationError("malformed signature token")
        delivery_id = self._delivery_id(headers)
        wanted = signed_value(delivery_id, body)
        for index, key in enumerate(keys):
            try:
                value, signed_at = TimestampSigner(key, salt=self.salt).unsign(token, return_timestamp=True)
            except (BadData, ValueError, OverflowError, OSError):
                continue
            if not hmac.compare_digest(value[:64], wanted[:64]):
                raise VerificationError("body does not match its signed digest")
            if not hmac.compare_digest(value, wanted):
                raise VerificationError(f"{self.id_header} does not match its signed digest")
            stamp = check_timestamp(str(int(signed_at.timestamp())), now=now, tolerance=tolerance)
            return Verified(secret_index=index, timestamp=stamp)
        raise VerificationError("signature mismatch")

    def _delivery_id(self, headers: HeaderMap) -> str:
        """The id header exactly as :meth:`parse` reads it (it is part of what is signed)."""
        value = headers.get(self.id_header)
        if not value:
            raise VerificationError(f"missing {self.id_header} header")
        if len(value) > MAX_HEADER:
            raise VerificationError(f"{self.id_header} header too long")
        return value

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        return Parsed(
            id=require_str(headers.get(self.id_header), self.id_header),
            type=require_str(field(payload, "type"), "type"),
            payload=payload,
        )

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        body = dump(outgoing_payload(outgoing, type=outgoing.type))
        signer = _signer_at(key, self.salt, outgoing.timestamp)
        token = signer.sign(signed_value(outgoing.id, body)).decode("ascii")
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                self.signature_header: token,
                self.id_header: outgoing.id,
            },
        )
