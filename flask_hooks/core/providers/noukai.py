"""``noukai``: ``X-Noukai-Signature`` with ``v1``/``v2`` slots.

During a 24 h rotation Noukai sends ``v1=`` (new secret) and ``v2=``
(previous secret); old pods match on v2, new pods on v1. Noukai's guide
does not state the hash, encoding or signed bytes, so the header name, slot
names, timestamp slot and what is signed are constructor parameters.
Our reading: hex HMAC-SHA256 of the raw body, or of ``t.body`` when a
``t=`` slot is present (and then the timestamp tolerance applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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
    b64_text,
    check_timestamp,
    field,
    match_encoded,
    outgoing_payload,
    require_str,
)

Signed = Literal["auto", "body", "timestamp.body"]
Encoding = Literal["hex", "base64"]

_MODES: tuple[Signed, ...] = ("auto", "body", "timestamp.body")
_ENCODINGS: tuple[Encoding, ...] = ("hex", "base64")


def _slot_names(slots: Sequence[str]) -> tuple[str, ...]:
    """The signature slots as a tuple of names; a bare string would be read as its characters."""
    names = () if isinstance(slots, str) else tuple(slots)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ConfigError("noukai: slots must be a list of slot names, such as ('v1', 'v2')")
    return names


class Noukai(HmacProvider):
    """Noukai job callbacks.

    ``signed``: ``"auto"`` signs ``t.body`` when a timestamp slot is
    present and the body otherwise; ``"body"`` always the body (a ``t``
    slot is then unauthenticated and ignored); ``"timestamp.body"``
    requires the timestamp slot.
    """

    name = "noukai"

    def __init__(
        self,
        *,
        signature_header: str = "X-Noukai-Signature",
        id_header: str = "X-Noukai-Delivery",
        slots: Sequence[str] = ("v1", "v2"),
        timestamp_slot: str = "t",
        signed: Signed = "auto",
        encoding: Encoding = "hex",
    ) -> None:
        # Checked here: a misspelt mode would otherwise act as "auto" and pass
        # deliveries without a timestamp slot.
        if signed not in _MODES:
            raise ConfigError(f"noukai: signed must be one of {', '.join(_MODES)}, not {signed!r}")
        if encoding not in _ENCODINGS:
            raise ConfigError(f"noukai: encoding must be one of {', '.join(_ENCODINGS)}, not {encoding!r}")
        self.signature_header = signature_header
        self.id_header = id_header
        self.slots = _slot_names(slots)
        self.timestamp_slot = timestamp_slot
        self.signed = signed
        self.encoding = encoding
        self.signs_timestamp = signed != "body"  # "body" ignores a t= slot

    def _encode(self, mac: bytes) -> str:
        return mac.hex() if self.encoding == "hex" else b64_text(mac)

    def _spelling(self, value: str) -> str:
        """A slot's signature as the text :meth:`_encode` writes: hex in either case, base64 as it is."""
        return value.lower() if self.encoding == "hex" else value

    @staticmethod
    def _prefix(timestamp: str | None) -> bytes:
        """What precedes the body in the signed bytes: ``<timestamp>.`` or nothing."""
        return b"" if timestamp is None else timestamp.encode("ascii") + b"."

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        slots = parse_slots(bounded_header(headers, self.signature_header))
        stamps = [v for k, v in slots if k == self.timestamp_slot]
        candidates = [self._spelling(v) for k, v in slots if k in self.slots]
        if not candidates:
            raise VerificationError("no usable signature slot")
        timestamp: float | None = None
        raw_stamp: str | None = None
        if self.signed != "body" and stamps:
            raw_stamp = stamps[0]
            timestamp = check_timestamp(raw_stamp, now=now, tolerance=tolerance)
        elif self.signed == "timestamp.body":
            raise VerificationError("missing timestamp slot")
        index = match_encoded(candidates, keys, self._prefix(raw_stamp), body, self._encode)
        return Verified(secret_index=index, timestamp=timestamp)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        kind = field(payload, "type") or field(payload, "event")
        return Parsed(
            id=require_str(headers.get(self.id_header), "delivery id"),
            type=require_str(kind, "type"),
            payload=payload,
        )

    def sign(
        self,
        outgoing: Outgoing,
        key: HmacKey,
        *,
        previous: HmacKey | None = None,
        timestamped: bool | None = None,
    ) -> SignedRequest:
        """Sign with ``key`` in the first slot; ``previous`` fills the second.

        ``previous`` reproduces a rotation window (``v1=`` new, ``v2=``
        previous secret). ``timestamped`` adds a ``t=`` slot; by default
        only when ``signed="timestamp.body"``.
        """
        body = dump(outgoing_payload(outgoing, type=outgoing.type))
        if timestamped is None:
            timestamped = self.signed == "timestamp.body"
        stamp = str(outgoing.timestamp) if timestamped and self.signed != "body" else None
        prefix = self._prefix(stamp)
        parts = [f"{self.timestamp_slot}={outgoing.timestamp}"] if timestamped else []
        parts.append(f"{self.slots[0]}={self._encode(key.mac(prefix, body))}")
        if previous is not None and len(self.slots) > 1:
            parts.append(f"{self.slots[1]}={self._encode(previous.mac(prefix, body))}")
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                self.signature_header: ",".join(parts),
                self.id_header: outgoing.id,
            },
        )
