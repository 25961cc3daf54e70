"""The provider interface: how one sender signs, identifies and types events.

A provider is a small, immutable description of a scheme. It never does
I/O and never reads a clock: ``now`` and the tolerance are passed in.
Subclass :class:`Provider` for a custom scheme; implement ``verify``,
``parse`` and ``sign`` (the last so tests can forge deliveries).
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple, TypeAlias

from ..errors import ConfigError, PayloadError, VerificationError
from ..event import HeaderMap

Tolerance = tuple[float, float]

#: One credential as its provider's :meth:`Provider.keys` resolved it:
#: UTF-8 bytes by default, an :class:`HmacKey` for the HMAC schemes, a
#: ``NaradaKey`` (token and secret) for Narada. Only the provider that made
#: it reads it; the pipeline just hands it back.
Key: TypeAlias = Any


class Verified(NamedTuple):
    """What a successful verification learnt: which secret, which timestamp."""

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


@dataclasses.dataclass(frozen=True, slots=True)
class HmacKey:
    """One secret of an HMAC-SHA256 scheme, keyed once when the receiver starts.

    Each MAC starts from a copy of the keyed state (``hmac.HMAC.copy``),
    so nothing is keyed twice; OpenSSL 3's one-shot ``hmac.digest`` looks
    the algorithm up again on every call and costs more. A prefix and a
    body are hashed in turn, so the body is never copied to put the
    prefix in front of it.
    """

    secret: bytes = dataclasses.field(repr=False)
    _keyed: hmac.HMAC = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.secret, digestmod="sha256"))

    def mac(self, *parts: bytes) -> bytes:
        """HMAC-SHA256 of the parts joined."""
        state = self._keyed.copy()
        for part in parts:
            state.update(part)
        return state.digest()


def secret_bytes(name: str, secrets: Sequence[str]) -> tuple[bytes, ...]:
    """The configured secrets as UTF-8, each a non-empty string, else a :class:`~flask_hooks.ConfigError`.

    A lone surrogate (``"\\ud800"``, what ``os.environ`` makes of undecodable
    bytes) has no UTF-8 form, so no sender can key with it.
    """
    out = []
    for secret in secrets:
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{name}: every secret must be a non-empty string")
        try:
            out.append(secret.encode("utf-8"))
        except UnicodeEncodeError:
            message = f"{name}: a secret must be text UTF-8 can encode (it has a lone surrogate)"
            raise ConfigError(message) from None
    return tuple(out)


def check_issued(name: str, secrets: Sequence[str], example: str) -> None:
    """Refuse a secret no sender issues: non-ASCII, or with blanks around it.

    For senders that generate the secret (Stripe, Slack, Shopify): a
    newline read from a file with it would be keyed as it is, and every
    genuine delivery would fail as a signature mismatch.
    """
    for secret in secrets:
        if isinstance(secret, str) and (not secret.isascii() or secret != secret.strip()):
            raise ConfigError(f"{name}: a signing secret is ASCII without surrounding spaces ({example})")


class Provider(ABC):
    """Base class of every signing scheme.

    ``keys`` turns the configured secrets (newest first) into the
    provider's own credentials once, at ``init_app``; a secret in the
    wrong format is a :class:`~flask_hooks.ConfigError` there rather than a failure per
    request. ``verify`` gets those credentials back, and ``sign`` one of
    them.
    """

    #: The short name used in ``HOOKS_PROVIDER`` and in the delivery log.
    name: ClassVar[str] = "custom"
    #: Status for a failed verification; some senders document their own.
    rejection_status: ClassVar[int] = 401
    #: Headers that carry this sender's credentials: never stored by the inbox
    #: (``Authorization``, ``Cookie``, ``Proxy-Authorization`` and names with a
    #: credential's word, such as ``X-Api-Key``, never are: see ``core.inbox``).
    redacted_headers: tuple[str, ...] = ()
    #: Body fields that carry credentials: masked wherever a delivery is shown.
    redacted_fields: ClassVar[tuple[str, ...]] = ()
    #: Whether the scheme needs ``secret=``/``HOOKS_SECRET`` at all (an
    #: instance carrying its own credentials may set it to False).
    needs_secret: bool = True
    #: Whether ``verify`` checks a signed timestamp against the tolerance. Such a
    #: receiver needs a dedupe TTL at least as long as the tolerance window, or a
    #: delivery re-sent after its id is forgotten is still in time and runs again
    #: (``init_app`` refuses the settings); a scheme that signs none sets False.
    signs_timestamp: bool = True

    def keys(self, secrets: Sequence[str]) -> tuple[Key, ...]:
        """Validate the configured secrets; by default each becomes its UTF-8 bytes."""
        return secret_bytes(self.name, secrets)

    def secret_text(self, secret: bytes) -> str:
        """A secret given as bytes (``secret=b"..."``) as the text :meth:`keys` takes:
        its UTF-8 text by default (a ``UnicodeDecodeError`` when it is not), or the
        spelling of a scheme whose senders' libraries take bytes as the raw key."""
        return secret.decode("utf-8")

    def held_secrets(self) -> tuple[str, ...]:
        """The credentials the instance holds itself (``Narada(token=...)``), as text: like
        the configured secrets, blanked in every traceback and excerpt shown."""
        return ()

    def secret_aliases(self, secrets: Sequence[str]) -> tuple[str, ...]:
        """Other texts of the configured secrets that code may quote (a key's own bytes),
        blanked as the secrets are; none by default."""
        return ()

    def key(self, secret: str) -> Key:
        """The key that signs with ``secret`` alone, in place of every configured
        credential: what ``flask hooks send --secret`` forges with."""
        return self.keys([secret])[0]

    @abstractmethod
    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[Key],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        """Check ``body`` against ``headers``; raise :class:`~flask_hooks.VerificationError`."""

    @abstractmethod
    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        """Extract id, type and payload; raise :class:`~flask_hooks.PayloadError`."""

    @abstractmethod
    def sign(self, outgoing: Outgoing, key: Key) -> SignedRequest:
        """Produce the request the real sender would make (for tests and the CLI)."""

    def immediate(self, parsed: Parsed) -> Any:
        """A reply owed before any dedupe or handler (Slack's url_verification)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class HmacProvider(Provider):
    """A scheme signed with HMAC-SHA256: each secret becomes an :class:`HmacKey`."""

    def keys(self, secrets: Sequence[str]) -> tuple[HmacKey, ...]:
        return tuple(HmacKey(secret) for secret in secret_bytes(self.name, secrets))


# Helpers shared by the presets. ------------------------------------------


def outgoing_payload(outgoing: Outgoing, **first: Any) -> Any:
    """What :meth:`Provider.sign` sends: the payload, ``{}`` when None.

    ``first`` puts fields in front of an object payload (which may
    override them); any other payload is returned as it is.
    """
    payload = {} if outgoing.payload is None else outgoing.payload
    if first and isinstance(payload, dict):
        return {**first, **payload}
    return payload


def match_macs(candidates: Sequence[bytes], keys: Sequence[HmacKey], prefix: bytes, body: bytes) -> int:
    """Position of the first key whose HMAC-SHA256 of ``prefix + body`` is one of ``candidates``.

    Keys are tried in order, newest first, and each comparison is
    constant-time.
    """
    for index, key in enumerate(keys):
        digest = key.mac(prefix, body)
        for candidate in candidates:
            if hmac.compare_digest(digest, candidate):
                return index
    raise VerificationError("signature mismatch")


def match_encoded(
    candidates: Sequence[str],
    keys: Sequence[HmacKey],
    prefix: bytes,
    body: bytes,
    encode: Callable[[bytes], str],
) -> int:
    """:func:`match_macs` for signatures compared as text: ``encode(digest)`` (``bytes.hex``,
    :func:`b64_text`) against each candidate, so only the spelling the sender writes matches
    and no candidate is decoded."""
    for index, key in enumerate(keys):
        expected = encode(key.mac(prefix, body))
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return index
    raise VerificationError("signature mismatch")


def b64_text(digest: bytes) -> str:
    """A digest as standard base64 text, padded, as the senders write it."""
    return base64.b64encode(digest).decode("ascii")


def match_body_mac(
    given: str,
    body: bytes,
    keys: Sequence[HmacKey],
    encode: Callable[[bytes], str],
    *,
    prefix: bytes = b"",
    timestamp: float | None = None,
) -> Verified:
    """One HMAC-SHA256 of ``prefix + body`` against the one digest a header carries.

    ``given`` is the header's ASCII text, compared with ``encode(digest)``
    (``bytes.hex``, or base64 as text), so only the spelling the sender's
    library writes is accepted.
    """
    for index, key in enumerate(keys):
        digest = key.mac(prefix, body) if prefix else key.mac(body)
        if hmac.compare_digest(encode(digest), given):
            return Verified(index, timestamp)
    raise VerificationError("signature mismatch")


def check_timestamp(raw: str, *, now: float, tolerance: Tolerance) -> float:
    """Parse a unix timestamp and check it lies within ``tolerance`` of ``now``.

    Only ASCII digits: ``float`` and ``int`` would also take a sign,
    ``1e9``, ``1_000``, other scripts' digits and surrounding blanks.
    """
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        raise VerificationError("invalid timestamp")
    stamp = float(text)  # not int: a number of 5,000 digits is merely too far in the future
    past, future = tolerance
    # Written to fail closed: every comparison with a NaN (``now`` or a bound) is false.
    if not stamp >= now - past:
        raise VerificationError("timestamp too old")
    if not stamp <= now + future:
        raise VerificationError("timestamp in the future")
    return stamp


#: Longest id or type accepted, in characters: stores and logs key on them.
MAX_ID = 512


def require_str(value: Any, what: str) -> str:
    """A non-empty string field (whole numbers are accepted and stringified), or a 400.

    Other numbers are refused: parsed as floats, distinct ones would
    collapse into one id (``1.0`` and ``1e0``, ``1e400`` and ``2e400``,
    ``9007199254740993.0`` and ``9007199254740992.0``).
    """
    if value is None:
        raise PayloadError(f"missing {what}")
    if isinstance(value, float):
        raise PayloadError(f"{what} is a number with a fraction or an exponent, not text or a whole number")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise PayloadError(f"{what} is not a string")
    if not value:
        raise PayloadError(f"missing {what}")
    if len(value) > MAX_ID:
        raise PayloadError(f"{what} too long (over {MAX_ID} characters)")
    return value


def field(payload: Any, *path: str) -> Any:
    """``payload[a][b]...`` or None, without raising on odd shapes (a JSON object is a dict)."""
    node = payload
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
