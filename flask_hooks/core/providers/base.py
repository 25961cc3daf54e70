"""The provider interface: how one sender signs, identifies and types events.

A provider is a small, immutable description of a scheme. It never does
I/O and never reads a clock: ``now`` and the tolerance are passed in.
Subclass :class:`Provider` for a custom scheme; implement ``verify``,
``parse`` and ``sign`` (the last so tests can forge deliveries).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

from ..errors import ConfigError, PayloadError, VerificationError
from ..event import Headers

Tolerance = tuple[float, float]


class Verified(NamedTuple):
    """What a successful verification learnt: which secret, which timestamp.

    A named tuple rather than a frozen dataclass: it is built on every
    request, and a tuple costs a third of the time.
    """

    secret_index: int = 0
    timestamp: float | None = None


class Parsed(NamedTuple):
    """The identity of a delivery: dedupe id, event type, payload."""

    id: str
    type: str
    payload: Any
    attempt: int | None = None


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """What a test (or ``flask hooks send``) wants to forge."""

    type: str
    payload: Any
    id: str
    timestamp: int


@dataclasses.dataclass(frozen=True)
class SignedRequest:
    """The exact bytes and headers a real sender would post."""

    body: bytes
    headers: dict[str, str]


class Provider(ABC):
    """Base class of every signing scheme.

    ``keys`` turns the configured secrets (newest first) into key bytes
    once, at ``init_app``; a secret in the wrong format is a
    :class:`ConfigError` there rather than a failure per request.
    """

    #: The short name used in ``HOOKS_PROVIDER`` and in the delivery log.
    name: ClassVar[str] = "custom"
    #: Status for a failed verification; some senders document their own.
    rejection_status: ClassVar[int] = 401
    #: Whether the scheme needs ``secret=``/``HOOKS_SECRET`` at all (an
    #: instance carrying its own credentials may set it to False).
    needs_secret: bool = True

    def keys(self, secrets: Sequence[str]) -> tuple[bytes, ...]:
        """Validate the configured secrets and derive the MAC keys."""
        out = []
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"{self.name}: every secret must be a non-empty string")
            out.append(secret.encode("utf-8"))
        return tuple(out)

    @abstractmethod
    def verify(
        self,
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        """Check ``body`` against ``headers``; raise :class:`VerificationError`."""

    @abstractmethod
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        """Extract id, type and payload; raise :class:`PayloadError`."""

    @abstractmethod
    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        """Produce the request the real sender would make (for tests and the CLI)."""

    def immediate(self, parsed: Parsed) -> Any:
        """A reply owed before any dedupe or handler (Slack's url_verification)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# Helpers shared by the presets. ------------------------------------------


#: Shared results for the common case (no timestamp), so a verify allocates nothing.
_SHARED = 8
_PLAIN = tuple(Verified(secret_index=i) for i in range(_SHARED))
#: ``Verified((index, timestamp))`` without the named tuple's Python-level ``__new__``.
_new_verified: Callable[[tuple[int, float | None]], Verified] = functools.partial(tuple.__new__, Verified)


def verified(index: int, timestamp: float | None = None) -> Verified:
    """The :class:`Verified` for a matching position (and timestamp)."""
    if timestamp is None and index < _SHARED:
        return _PLAIN[index]
    return _new_verified((index, timestamp))


class _Hash(Protocol):
    def copy(self) -> _Hash: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


#: Constant-time equality: bytes with bytes, or ASCII text with text.
_compare: Callable[[Any, Any], bool] = hmac.compare_digest
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=256)
def _pads(key: bytes) -> tuple[_Hash, _Hash]:
    """HMAC-SHA256's inner and outer states after the padded key (RFC 2104).

    Keying hashes the padded key twice; copying these two states skips
    that, and copying a plain SHA-256 state costs a third of copying
    OpenSSL's HMAC context. ``tests/providers/test_mac.py`` checks the
    result against :func:`hmac.digest`.
    """
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def _mac(key: bytes, prefix: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of ``prefix + body``, without concatenating them (no body copy)."""
    inner, outer = _pads(key)
    state = inner.copy()
    if prefix:
        state.update(prefix)
    state.update(body)
    result = outer.copy()
    result.update(state.digest())
    return result.digest()


def match_macs(candidates: Sequence[bytes], keys: Sequence[bytes], prefix: bytes, body: bytes) -> int:
    """Position of the first key whose HMAC-SHA256 of ``prefix + body`` is one of ``candidates``.

    Keys are tried lazily, newest first: during a rotation the newest key
    costs one MAC. Each comparison is constant-time.
    """
    for index, key in enumerate(keys):
        digest = _mac(key, prefix, body)
        for candidate in candidates:
            if _compare(digest, candidate):
                return index
    raise VerificationError("signature mismatch")


def match_body_mac(
    given: bytes | str,
    body: bytes,
    keys: Sequence[bytes],
    encode: Callable[[bytes], bytes | str] | None = None,
    *,
    prefix: bytes = b"",
    timestamp: float | None = None,
) -> Verified:
    """The common scheme: one HMAC-SHA256 of ``prefix + body`` against one digest (the hot path).

    ``given`` is the raw digest, or, with ``encode``, the header's ASCII
    text compared with ``encode(digest)`` (``bytes.hex``,
    ``base64.b64encode``): encoding 32 bytes is cheaper than strictly
    decoding and validating what the sender wrote. The prefix is hashed
    separately, so the body is never copied.
    """
    for index, key in enumerate(keys):
        digest = _mac(key, prefix, body)
        if _compare(digest if encode is None else encode(digest), given):
            return verified(index, timestamp)
    raise VerificationError("signature mismatch")


def check_timestamp(raw: str, *, now: float, tolerance: Tolerance) -> float:
    """Parse a unix timestamp and check it lies within ``tolerance`` of ``now``."""
    if raw.isdigit() and raw.isascii() and len(raw) < 16:
        stamp = float(raw)  # the usual case, checked first
    else:
        try:
            stamp = float(raw) if raw.isascii() and raw.strip().lstrip("-").isdigit() else math.nan
        except ValueError:
            stamp = math.nan
        if math.isnan(stamp):
            raise VerificationError("invalid timestamp")
    if stamp < now - tolerance[0]:
        raise VerificationError("timestamp too old")
    if stamp > now + tolerance[1]:
        raise VerificationError("timestamp in the future")
    return stamp


def load_json(body: bytes) -> Any:
    """Parse JSON strictly: UTF-8 without a BOM (RFC 8259 section 8.1), no NaN/Infinity.

    The bytes are decoded strictly first: ``json.loads`` on bytes would
    also take UTF-16/32 and, through ``surrogatepass``, CESU-8 encoded
    surrogates (``b"\\xed\\xa0\\x80"``), handing the handler text no UTF-8
    sender wrote.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8") from None
    return load_json_text(text)


def load_json_text(text: str) -> Any:
    """:func:`load_json` for text already decoded.

    One decoder is built once: ``json.loads`` builds a new one per call
    when given an option, which cost more than the parse of a small body.
    """
    try:
        return _STRICT.decode(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("body is not JSON") from exc


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, which is what every sender here posts; else a 400."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)


#: Longest id or type accepted, in characters: stores and logs key on them.
MAX_ID = 512


def require_str(value: Any, what: str) -> str:
    """A non-empty string field (finite numbers are accepted and stringified), or a 400.

    Non-finite numbers are refused: ``1e400`` and ``2e400`` both parse
    as ``inf`` and would collapse into one id.
    """
    if value is None:
        raise PayloadError(f"missing {what}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{what} is not a finite number")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise PayloadError(f"{what} is not a string")
    if not value:
        raise PayloadError(f"missing {what}")
    if len(value) > MAX_ID:
        raise PayloadError(f"{what} too long (over {MAX_ID} characters)")
    return value


def field(payload: Any, *path: str) -> Any:
    """``payload[a][b]...`` or None, without raising on odd shapes."""
    node = payload
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def dump(payload: Any) -> bytes:
    """Compact JSON bytes, as most senders emit."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
