"""Bounded parsing of signature headers, shared where the logic is the same.

Every function here either returns a value or raises
:class:`VerificationError`; oversized or odd input is refused early so a
hostile header costs no more than a few kilobytes of work.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import VerificationError
from ..event import HeaderMap

#: Longer signature headers are refused without parsing.
MAX_HEADER = 8 * 1024
#: At most this many slots/entries of one header are considered.
MAX_SLOTS = 64


def bounded_header(headers: HeaderMap, name: str, *, strip: bool = True) -> str:
    """A required, ASCII, at most 8 KiB header, stripped unless ``strip`` is false
    (for a value that is signed and also used as it is)."""
    value = headers.get(name)
    if not value:
        raise VerificationError(f"missing {name} header")
    if len(value) > MAX_HEADER:
        raise VerificationError(f"{name} header too long")
    if not value.isascii():
        raise VerificationError(f"malformed {name} header")
    return value.strip() if strip else value


def parse_slots(value: str, *, separator: str = ",") -> list[tuple[str, str]]:
    """``k=v`` pairs in order; slots without ``=`` or with empty parts are skipped."""
    out: list[tuple[str, str]] = []
    for slot in value.split(separator, MAX_SLOTS)[:MAX_SLOTS]:
        key, sep, val = slot.strip().partition("=")
        if sep and key.strip() and val.strip():
            out.append((key.strip(), val.strip()))
    return out


#: What a hex digest may contain: ``bytes.fromhex`` alone also skips whitespace.
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
#: Standard base64 with its padding, nothing else (``b64decode`` skips junk by default).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def from_hex(value: str) -> bytes | None:
    """A hex digest's bytes (either case, even length, nothing else), or None.

    Strict so that no other spelling of a captured signature (spaces or
    line breaks inside it) is accepted.
    """
    if not _HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def from_base64(value: str) -> bytes | None:
    """Canonical standard base64 (padding required) as bytes, or None.

    Beyond the alphabet, the unused low bits of the last character must
    be zero (``AA==``, not ``AB==``): the encoding a sender's own
    library produces is the only one accepted, as the reference helpers,
    which compare base64 text, do.
    """
    if not value or not _BASE64.fullmatch(value):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern already checked
        return None
    return raw if base64.b64encode(raw).decode("ascii") == value else None
