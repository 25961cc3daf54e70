"""Forged deliveries: the exact bytes and headers a real sender would post.

A :class:`SignedDelivery` is signed by the receiver's own provider with
one of the receiver's own keys, so it exercises the real verification
path. It never goes through ``json=``: the body bytes that were signed
are the bytes that are posted. ``body=`` makes the provider sign bytes
the test wrote itself (:func:`sign_exact`) instead of its own JSON.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask_hooks.core.errors import HookError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import FlowStep, HmacKey, ItsDangerous, Narada, _jsjson
from flask_hooks.core.providers.base import Key, Outgoing, SignedRequest
from flask_hooks.core.providers.flowstep import digest
from flask_hooks.core.providers.github import GitHub
from flask_hooks.core.providers.signed import signed_value
from flask_hooks.core.providers.slack import Slack

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.test import TestResponse

    from flask_hooks import Hooks, Receiver


def find_receiver(app: Flask, receiver: str | Hooks | Receiver | None, *, what: str) -> Receiver:
    """The receiver a fixture should target, or an error saying how to choose one."""
    from flask_hooks.extension import HooksState, Receiver

    if isinstance(receiver, Receiver):
        return receiver
    state = app.extensions.get("hooks")
    receivers = state.receivers if isinstance(state, HooksState) else {}
    if not receivers:
        raise LookupError(
            f"{what}: the app from your `app` fixture has no flask_hooks receiver;"
            " call Hooks.init_app(app) (or Hooks(app)) in the app factory"
        )
    name = receiver if isinstance(receiver, str) or receiver is None else receiver.name
    known = ", ".join(repr(n) for n in receivers)
    if name is None:
        if len(receivers) > 1:
            raise LookupError(f"{what}: the app has several receivers ({known}); pass receiver=<name>")
        return next(iter(receivers.values()))
    if name not in receivers:
        raise LookupError(f"{what}: no receiver named {name!r} on the app (receivers: {known})")
    return receivers[name]


def new_id() -> str:
    """A fresh delivery id in the ``evt_`` style most senders use."""
    return "evt_" + uuid.uuid4().hex[:24]


#: The content type Slack's commands and interactions, and GitHub's form webhooks, are posted with.
FORM = "application/x-www-form-urlencoded"


def merged(headers: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with ``extra`` added, or replacing those of the same name in any case:
    a ``stripe-signature`` given was sent beside the real one, and still verified."""
    replaced = {name.lower() for name in extra}
    return {**{k: v for k, v in headers.items() if k.lower() not in replaced}, **extra}


def _flip(body: bytes) -> bytes:
    """Change one byte, preferring the last letter or digit (JSON usually stays valid)."""
    data = bytearray(body or b" ")
    for index in range(len(data) - 1, -1, -1):
        char = data[index]
        if 0x30 <= char <= 0x39:
            data[index] = 0x30 + (char - 0x30 + 1) % 10
            return bytes(data)
        if 0x61 <= char <= 0x7A or 0x41 <= char <= 0x5A:
            data[index] = char ^ 0x20  # swap case: a different byte, same length
            return bytes(data)
    data[-1] ^= 0x01
    return bytes(data)


class _BodySwap:
    """Stands in for an :class:`HmacKey` while a provider signs its own body.

    Every MAC the provider asks for is computed over ``body`` in place of
    the last part (the body the provider built), so the provider's own
    header layout, prefixes and encodings sign the test's bytes. ``seen``
    records what was replaced, so :func:`sign_exact` can tell whether the
    provider followed that shape.
    """

    def __init__(self, key: HmacKey, body: bytes) -> None:
        self.key = key
        self.body = body
        self.seen: list[bytes] = []

    def mac(self, *parts: bytes) -> bytes:
        if not parts:
            raise ValueError("nothing to sign")
        self.seen.append(parts[-1])
        return self.key.mac(*parts[:-1], self.body)


def _flowstep_envelope(text: bytes, key: bytes) -> bytes:
    """``{"payload":<text>,"signature":...}``, signed over JavaScript's view of ``text``."""
    try:
        parsed = _jsjson.parse(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"flowstep: body= must be the JSON text of the payload ({exc})") from None
    signature = digest(_jsjson.stringify(parsed), key)
    return b'{"payload":' + text + b',"signature":"' + signature.encode("ascii") + b'"}'


def _token(key: bytes, salt: str, at: int, value: bytes) -> str:
    """itsdangerous's ``TimestampSigner`` token stamped ``at``, as the provider's ``sign`` makes it."""
    from itsdangerous import TimestampSigner

    class FixedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return at

    return FixedSigner(key, salt=salt).sign(value).decode("ascii")


def sign_exact(receiver: Receiver, outgoing: Outgoing, key: Key, body: bytes) -> SignedRequest:
    """The request ``receiver``'s provider would make if it had built ``body`` itself.

    Headers (ids, timestamps, tokens) are the provider's own; only the
    signature changes, to cover ``body``. Two schemes differ: flow-step
    signs ``JSON.stringify`` of the payload inside the body, so ``body``
    is the text of the ``payload`` member and the envelope is built
    around it; Narada signs nothing, so its body secret must be in
    ``body``. A custom provider whose keys are not :class:`HmacKey`\\ s
    cannot be made to sign given bytes. The result is checked with the
    provider's own ``verify``.
    """
    provider = receiver.provider
    what = f"signed_delivery(body=...) for provider {provider.name!r}"
    if isinstance(provider, FlowStep):
        signed = SignedRequest(_flowstep_envelope(body, key), provider.sign(outgoing, key).headers)
    elif isinstance(provider, ItsDangerous):
        headers = provider.sign(outgoing, key).headers
        token = _token(key, provider.salt, outgoing.timestamp, signed_value(outgoing.id, body))
        signed = SignedRequest(body, {**headers, provider.signature_header: token})
    elif isinstance(provider, Narada):
        signed = SignedRequest(body, provider.sign(outgoing, key).headers)
    elif isinstance(key, HmacKey):
        swap = _BodySwap(key, body)
        built = provider.sign(outgoing, swap)
        if not swap.seen or any(part != built.body for part in swap.seen):
            raise TypeError(f"{what}: its sign() does not MAC the body it builds as the last part")
        headers = dict(built.headers)
        if isinstance(provider, (Slack, GitHub)) and body.lstrip()[:1] not in (b"{", b"["):
            headers = merged(headers, {"Content-Type": FORM})  # a command, or GitHub's form type
        signed = SignedRequest(body, headers)
    else:
        raise TypeError(f"{what}: its keys are not HmacKeys, so it cannot sign given bytes")
    try:
        provider.verify(
            Headers(signed.headers),
            signed.body,
            receiver.keys,
            now=float(outgoing.timestamp),
            tolerance=(math.inf, math.inf),
        )
    except HookError as exc:
        hint = (
            " (Narada signs nothing: the bytes carry the body secret)" if isinstance(provider, Narada) else ""
        )
        raise ValueError(f"{what}: these bytes do not verify: {exc.reason}{hint}") from None
    return signed


def _signed(receiver: Receiver, outgoing: Outgoing, key: Key, exact: bytes | None) -> SignedRequest:
    if exact is None:
        return receiver.provider.sign(outgoing, key)
    return sign_exact(receiver, outgoing, key, exact)


@dataclasses.dataclass(frozen=True)
class SignedDelivery:
    """One forged delivery aimed at one receiver of one app.

    ``id`` and ``type`` are what the receiver will see (its provider's
    ``parse`` of these bytes), which for some schemes differs from the
    id given when forging (Narada's is ``requestId:status``). ``exact``
    is the ``body=`` it was forged with, signed again by the variants.
    """

    app: Flask
    receiver: Receiver
    outgoing: Outgoing
    secret_index: int
    body: bytes
    headers: dict[str, str]
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exact: bytes | None = None
    #: The bytes the signature covers, once :meth:`tampered` changed ``body``.
    signed_body: bytes | None = None

    @classmethod
    def forge(
        cls,
        app: Flask,
        receiver: Receiver,
        type: str,
        payload: Any = None,
        *,
        id: str | None = None,
        timestamp: int | None = None,
        secret_index: int = 0,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> SignedDelivery:
        """Sign ``payload`` as ``type`` with the receiver's provider and key.

        ``body`` instead of ``payload``: these exact bytes are posted and
        signed as they are, never re-serialized, with the headers the provider derives
        from ``type``, ``id`` and ``timestamp``.
        """
        if body is not None:
            if payload is not None:
                raise TypeError("signed_delivery: pass payload= or body=, not both")
            if not isinstance(body, (bytes, bytearray)):
                raise TypeError(f"signed_delivery: body= must be bytes, not {body.__class__.__name__}")
            body = bytes(body)
        if not 0 <= secret_index < len(receiver.keys):
            raise IndexError(
                f"receiver {receiver.name!r} has {len(receiver.keys)} secret(s);"
                f" secret_index={secret_index} is out of range"
            )
        stamp = int(receiver.now()) if timestamp is None else int(timestamp)
        outgoing = Outgoing(type=type, payload=payload, id=new_id() if id is None else id, timestamp=stamp)
        extra = dict(headers or {})
        signed = _signed(receiver, outgoing, receiver.keys[secret_index], body)
        headers = merged(signed.headers, extra)
        return cls(app, receiver, outgoing, secret_index, signed.body, headers, extra, body)

    # What the receiver will make of it ------------------------------------

    @property
    def id(self) -> str:
        """The dedupe id the receiver will record."""
        parsed = self._parsed()
        return parsed.id if parsed is not None else self.outgoing.id

    @property
    def type(self) -> str:
        """The event type the receiver will route on."""
        parsed = self._parsed()
        return parsed.type if parsed is not None else self.outgoing.type

    @property
    def url(self) -> str:
        """The receiver's URL path, where :meth:`send` posts."""
        return self.receiver.settings.url

    @property
    def timestamp(self) -> int:
        """The timestamp it was signed with (meaningful when :attr:`timestamped`)."""
        return self.outgoing.timestamp

    @property
    def timestamped(self) -> bool:
        """Whether the scheme signs a timestamp that verification checks.

        Asked of the provider itself: a verified timestamp means one is
        signed (a time that only appears in the body, like Narada's
        ``createdAt``, is not).
        """
        try:
            verified = self.receiver.provider.verify(
                Headers(self.headers),
                self.body if self.signed_body is None else self.signed_body,
                self.receiver.keys,
                now=float(self.outgoing.timestamp),
                tolerance=(math.inf, math.inf),
            )
        except HookError:
            return False
        return verified.timestamp is not None

    def _parsed(self) -> Any:
        try:
            return self.receiver.provider.parse(Headers(self.headers), self.body)
        except HookError:
            return None

    def _sign(self, outgoing: Outgoing) -> SignedRequest:
        return _signed(self.receiver, outgoing, self.receiver.keys[self.secret_index], self.exact)

    # Sending ----------------------------------------------------------------

    def send(self, headers: Mapping[str, str] | None = None) -> TestResponse:
        """POST the exact signed bytes to the receiver's URL through the test client."""
        sent = merged(self.headers, headers or {})
        return self.app.test_client().post(self.url, data=self.body, headers=sent)

    def resend(self, headers: Mapping[str, str] | None = None) -> TestResponse:
        """The same bytes and headers again: a sender's retry, or a replay."""
        return self.send(headers)

    # Variants ----------------------------------------------------------------

    def signed_at(self, timestamp: int) -> SignedDelivery:
        """The same delivery (id, body bytes, key) re-signed at ``timestamp``.

        Only the signature and timestamp headers change, as when a sender
        signs a retry: a time the provider writes into the body (Stripe's
        ``created``, Slack's ``event_time``, Narada's ``createdAt``) stays
        the event's. Flow-step (which signs no time) and custom providers
        that cannot sign given bytes build the body again.
        """
        if self.signed_body is not None:  # re-signed as it was, then changed again
            untouched = dataclasses.replace(self, body=self.signed_body, signed_body=None)
            return untouched.signed_at(timestamp).tampered()
        outgoing = dataclasses.replace(self.outgoing, timestamp=int(timestamp))
        key, provider = self.receiver.keys[self.secret_index], self.receiver.provider
        if self.exact is None and (isinstance(key, HmacKey) or isinstance(provider, (ItsDangerous, Narada))):
            signed = sign_exact(self.receiver, outgoing, key, self.body)
        else:
            signed = self._sign(outgoing)
        headers = merged(signed.headers, self.extra_headers)
        return dataclasses.replace(self, outgoing=outgoing, body=signed.body, headers=headers)

    def tampered(self) -> SignedDelivery:
        """A copy whose body differs by one byte while the headers (signature) stay."""
        signed = self.body if self.signed_body is None else self.signed_body
        return dataclasses.replace(self, body=_flip(signed), signed_body=signed)  # twice is once

    def stale(self) -> SignedDelivery:
        """A copy re-signed with a timestamp just outside the receiver's tolerance."""
        if not self.timestamped:
            raise ValueError(
                f"provider {self.receiver.provider.name!r} signs no timestamp, so a delivery"
                " cannot be stale; replay protection for this scheme comes from dedupe (use .resend())"
            )
        past = self.receiver.settings.tolerance[0]
        return self.signed_at(int(self.receiver.now() - past) - 60)

    def __repr__(self) -> str:
        return f"<SignedDelivery {self.type!r} id={self.id!r} -> {self.receiver.name}:{self.url}>"
