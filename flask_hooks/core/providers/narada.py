"""``narada``: Narada Cloud task callbacks; no signature at all.

Narada authenticates a callback with what the caller chose when
submitting the task: ``callbackHeaders`` echoed on the POST (typically
``Authorization: Bearer <token>``) and/or ``callbackSecret`` echoed in
the body field ``secret``. Each configured credential is required and
compared in constant time.

``Hooks(provider="narada", secret="x")`` checks the body secret only;
``Hooks(provider=Narada(token="t", secret="s"))`` checks both and needs no
``HOOKS_SECRET``. The instance's ``secret`` wins over ``secret=``/
``HOOKS_SECRET``; with ``Narada(token=...)`` alone, a configured secret is
required as the body secret as well.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, PayloadError, VerificationError
from ..event import HeaderMap
from ._json import dump, load_json, load_object
from ._parsing import MAX_HEADER
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    field,
    outgoing_payload,
    require_str,
    secret_bytes,
)


@dataclasses.dataclass(frozen=True)
class NaradaKey:
    """The credentials of one rotation position: the bearer token and/or the body secret."""

    token: str | None = dataclasses.field(default=None, repr=False)
    secret: str | None = dataclasses.field(default=None, repr=False)


def _listed(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigError(f"narada: {what} must be a non-empty string or a list of them (newest first)")
    return tuple(items)


def _sendable(tokens: tuple[str, ...], header: str) -> tuple[str, ...]:
    """Tokens that arrive in ``header`` as they were configured: printable ASCII, no blanks
    around them (which servers strip).

    A WSGI server hands a header over as the latin-1 reading of its bytes, and
    the sender's HTTP client decides those bytes: Node's refuses characters past
    U+00FF and sends the rest as latin-1, Go's and curl send UTF-8. Any other
    token would be refused on every delivery, or accepted from some senders only.
    """
    for token in tokens:
        if not (token.isascii() and token.isprintable() and token == token.strip()):
            raise ConfigError(
                f"narada: a token travels in the {header} header, where only printable ASCII"
                " without surrounding blanks arrives as configured; choose such a token"
                " (secrets.token_urlsafe() makes one) and send it in callbackHeaders"
            )
    return tokens


def _at(items: tuple[str, ...], index: int) -> str | None:
    """The credential at a rotation position; a shorter list repeats its last (oldest) one."""
    return items[min(index, len(items) - 1)] if items else None


def _first_match(given: str, wanted: Sequence[str | None]) -> int | None:
    """Position of the first credential equal to ``given``, comparing against every one."""
    found = None
    raw = given.encode("utf-8", "surrogatepass")
    for index, candidate in enumerate(wanted):
        if candidate is not None and hmac.compare_digest(raw, candidate.encode("utf-8", "surrogatepass")):
            found = index if found is None else found
    return found


class Narada(Provider):
    """Bearer token and/or body secret; ``token``/``secret`` take a list during rotation."""

    name = "narada"
    redacted_fields = ("secret",)  # the callbackSecret travels in the body
    signs_timestamp = False

    def __init__(
        self,
        *,
        token: str | Sequence[str] | None = None,
        secret: str | Sequence[str] | None = None,
        header: str = "Authorization",
        scheme: str = "Bearer",
    ) -> None:
        self.tokens = _sendable(_listed(token, "token"), header)
        self.secrets = _listed(secret, "secret")
        self.header = header
        self.scheme = scheme
        self.redacted_headers = (header,)  # the bearer token, whatever header carries it
        # Credentials carried by the instance make HOOKS_SECRET optional.
        self.needs_secret = not (self.tokens or self.secrets)

    def keys(self, secrets: Sequence[str]) -> tuple[NaradaKey, ...]:
        """One :class:`NaradaKey` per rotation position, newest first."""
        if self.secrets:
            body_secrets = self.secrets
        else:
            secret_bytes(self.name, secrets)  # validates them
            body_secrets = tuple(secrets)
        if not (self.tokens or body_secrets):
            raise ConfigError("narada: configure a token and/or a secret")
        count = max(len(self.tokens), len(body_secrets))
        return tuple(NaradaKey(token=_at(self.tokens, i), secret=_at(body_secrets, i)) for i in range(count))

    def held_secrets(self) -> tuple[str, ...]:
        return (*self.tokens, *self.secrets)

    def key(self, secret: str) -> NaradaKey:
        """``secret`` as each credential this receiver checks (a forgery of both)."""
        secret_bytes(self.name, [secret])
        if self.tokens:
            _sendable((secret,), self.header)
        return NaradaKey(token=secret if self.tokens else None, secret=secret)

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[NaradaKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        tokens = [key.token for key in keys]
        secrets = [key.secret for key in keys]
        if not any(tokens) and not any(secrets):
            raise VerificationError("no credential configured")
        # The oldest credential in use is what an operator needs to see.
        index = 0
        if any(tokens):
            value = headers.get(self.header) or ""
            prefix = f"{self.scheme} " if self.scheme else ""
            if not value or len(value) > MAX_HEADER or value[: len(prefix)].lower() != prefix.lower():
                raise VerificationError(f"missing {self.header} header")
            token_index = _first_match(value[len(prefix) :], tokens)
            if token_index is None:
                raise VerificationError("invalid token")
            index = token_index
        if any(secrets):
            matched = _first_match(self._body_secret(body), secrets)
            if matched is None:
                raise VerificationError("invalid secret")
            index = max(index, matched)
        return Verified(secret_index=index)

    @staticmethod
    def _body_secret(body: bytes) -> str:
        try:
            payload = load_json(body)
        except PayloadError as exc:
            # The secret is in the body: a body that does not parse cannot be verified,
            # and a sender's bug (an overflowing number) should be told apart from a forgery.
            raise VerificationError(f"missing secret: {exc}") from None
        given = field(payload, "secret")
        if not isinstance(given, str) or not given:
            raise VerificationError("missing secret")
        return given

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = load_object(body)
        request_id = require_str(field(payload, "requestId"), "requestId")
        status = require_str(field(payload, "status"), "status")
        if ":" in status:  # ("a:b", "c") and ("a", "b:c") would be one id; no Narada status has one
            raise PayloadError("status has a ':'")
        # Checked again as a whole: two fields of MAX_ID each make a key no store should have to take.
        return Parsed(id=require_str(f"{request_id}:{status}", "id"), type=status, payload=payload)

    def sign(self, outgoing: Outgoing, key: NaradaKey) -> SignedRequest:
        request_id = outgoing.id
        if request_id.endswith(f":{outgoing.type}"):
            request_id = request_id[: -len(outgoing.type) - 1]
        stamp = datetime.datetime.fromtimestamp(outgoing.timestamp, datetime.timezone.utc).isoformat()
        extra: Any = outgoing_payload(outgoing)
        payload = {
            "requestId": request_id,
            "secret": key.secret,
            "status": outgoing.type,
            "browserWindowId": None,
            "response": {"text": ""},
            "createdAt": stamp,
            "completedAt": stamp,
            "usage": None,
            **(extra if isinstance(extra, dict) else {}),
        }
        headers = {"Content-Type": "application/json"}
        if key.token is not None:
            headers[self.header] = f"{self.scheme} {key.token}" if self.scheme else key.token
        return SignedRequest(body=dump(payload), headers=headers)
