"""Signature verification: a 1 MiB body, body copies, and each preset vs its sender's library."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from werkzeug.test import EnvironBuilder

from flask_hooks.core.event import Headers
from flask_hooks.core.providers.base import Outgoing, Provider
from flask_hooks.core.providers.registry import PRESETS

from .apps import hooks_app, plain_app
from .common import SECRET, Fact, Result, Row, generic_request, paired

MIB = 1024 * 1024
TOLERANCE = (300.0, 300.0)


def big_body() -> list[Row]:
    provider = PRESETS["generic"]()
    keys = provider.keys([SECRET])
    body, headers = generic_request("big", extra=MIB - 300)
    hdrs = Headers(headers)
    key = SECRET.encode()

    def ours() -> object:
        return provider.verify(hdrs, body, keys, now=0.0, tolerance=TOLERANCE)

    def bare() -> object:
        return hmac.new(key, body, hashlib.sha256).digest()

    rows: list[Row] = [
        Result(
            "verify",
            f"generic verify, {len(body) // 1024} KiB body",
            *paired(ours, bare, 20, rounds=15),
            "s",
            1.20,
        )
    ]
    rows.append(
        Fact(
            "verify",
            "verify: extra memory, in body copies (tracemalloc peak)",
            _peak(ours) / len(body),
            "copies",
            goal=0.05,
        )
    )
    rows.extend(_request_copies(body, headers))
    return rows


def _peak(func: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        func()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _ignore(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def _request_copies(body: bytes, headers: dict[str, str]) -> list[Row]:
    """A whole 1 MiB request through each app: peak allocation while handling it."""
    out = {}
    for kind, app in (("hooks", hooks_app("memory://")), ("plain", plain_app("memory://"))):
        app.wsgi_app(
            EnvironBuilder(
                "/webhooks", method="POST", data=b"{}", headers=list(headers.items())
            ).get_environ(),
            _ignore,
        )
        environ = EnvironBuilder(
            "/webhooks", method="POST", data=body, headers=list(headers.items())
        ).get_environ()

        def call(app: Any = app, environ: dict[str, Any] = environ) -> None:
            for chunk in app.wsgi_app(environ, _ignore):
                del chunk

        out[kind] = _peak(call) / len(body)
    return [
        Fact(
            "verify",
            "whole 1 MiB request, peak allocation in body copies",
            out["hooks"],
            "copies",
            baseline=out["plain"],
            note="the request keeps one copy (the body bytes); verify adds none. The receiver reads "
            "the WSGI input once (1 copy), the reference's werkzeug get_data reads chunks, then "
            "joins them (2 copies); json.loads decodes to str, then builds the payload's strings, "
            "in both apps",
        )
    ]


# Each preset against the sender's own library (or a plain hmac reference). --------------


def _signed(name: str, secret: str, now: int) -> tuple[Provider, tuple[bytes, ...], bytes, dict[str, str]]:
    provider = PRESETS[name]()
    keys = provider.keys([secret])
    payload = {"object": {"id": "obj_1", "amount": 1999, "items": [{"sku": f"sku-{i}"} for i in range(40)]}}
    request = provider.sign(Outgoing("order.created", payload, "evt_bench", now), keys[0])
    return provider, keys, request.body, request.headers


def _reference(name: str, secret: str, body: bytes, headers: Headers) -> tuple[Callable[[], object], str]:
    """The sender library's verify for ``name``, or a plain hmac reference.

    Each reads its headers from ``headers``, the same werkzeug mapping ours
    gets, on every call, as a Flask view would from ``request.headers``.
    """
    if name in ("standard-webhooks", "svix"):
        if name == "svix":
            from svix.webhooks import Webhook as SvixWebhook

            svix = SvixWebhook(secret)
            return (lambda: svix.verify(body, headers)), "svix.webhooks.Webhook.verify"
        from standardwebhooks import Webhook

        std = Webhook(secret)
        return (lambda: std.verify(body, headers, json_parse=False)), "standardwebhooks.Webhook.verify"
    if name == "stripe":
        import stripe

        def stripe_verify() -> object:
            return stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], secret, 300)

        return stripe_verify, "stripe.WebhookSignature.verify_header"
    # The senders' own published verification code, verbatim but for the error type.
    if name == "github":
        # docs.github.com, "Validating webhook deliveries", Python example.
        def verify_signature(payload_body: bytes, secret_token: str, signature_header: str) -> None:
            if not signature_header:
                raise PermissionError("x-hub-signature-256 header is missing!")
            hash_object = hmac.new(secret_token.encode("utf-8"), msg=payload_body, digestmod=hashlib.sha256)
            expected_signature = "sha256=" + hash_object.hexdigest()
            if not hmac.compare_digest(expected_signature, signature_header):
                raise PermissionError("Request signatures didn't match!")

        return (
            lambda: verify_signature(body, secret, headers["X-Hub-Signature-256"])
        ), "GitHub docs' verify_signature"
    if name == "shopify":
        # shopify.dev, "Verify webhook deliveries", Python example.
        def verify_webhook(data: bytes, hmac_header: str) -> bool:
            digest = hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()
            computed_hmac = base64.b64encode(digest)
            return hmac.compare_digest(computed_hmac, hmac_header.encode("utf-8"))

        given = "X-Shopify-Hmac-Sha256"
        return (lambda: verify_webhook(body, headers[given])), "Shopify docs' verify_webhook"
    if name == "slack":
        from slack_sdk.signature import SignatureVerifier

        slack = SignatureVerifier(secret)
        return (lambda: slack.is_valid_request(body, headers)), "slack_sdk SignatureVerifier"
    if name == "generic":
        # Seed 003 (the archived API's docs), Python example: the body as received text.
        def verify_webhook_signature(payload: str, signature: str, secret: str) -> bool:
            expected_signature = hmac.new(
                secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256
            ).hexdigest()
            return hmac.compare_digest(signature, expected_signature)

        return (
            lambda: verify_webhook_signature(body.decode("utf-8"), headers["X-Webhook-Signature"], secret)
        ), "the archived webhook guide's verify_webhook_signature"
    raise LookupError(name)


def providers() -> list[Row]:
    rows: list[Row] = []
    secret = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef!!").decode()
    now = int(time.time())
    for name in sorted(PRESETS):
        provider, keys, body, headers = _signed(name, secret, now)
        hdrs = Headers(headers)
        try:
            reference, what = _reference(name, secret, body, hdrs)
        except (LookupError, ImportError):
            continue
        assert reference() is not False, name

        def ours(
            provider: Provider = provider, body: bytes = body, hdrs: Headers = hdrs, keys: Any = keys
        ) -> object:
            return provider.verify(hdrs, body, keys, now=time.time(), tolerance=TOLERANCE)

        rows.append(
            Result(
                "providers",
                f"{name} verify ({len(body)} B) vs {what}",
                *paired(ours, reference, 400),
                "s",
                1.0,
            )
        )
        if name in _FLOOR:
            # Informational: the bare MAC over the signed bytes, with every lookup done in advance.
            key, signed = keys[0].secret, _FLOOR[name](body, headers)

            def bare(key: bytes = key, signed: bytes = signed) -> bytes:
                return hmac.new(key, signed, hashlib.sha256).digest()

            rows.append(
                Result(
                    "providers",
                    f"{name} verify vs bare hmac over pre-extracted input (floor)",
                    *paired(ours, bare, 400),
                    "s",
                )
            )
    return rows


#: What each plain-HMAC scheme signs, for the floor rows.
_FLOOR: dict[str, Callable[[bytes, dict[str, str]], bytes]] = {
    "generic": lambda body, headers: body,
    "github": lambda body, headers: body,
    "shopify": lambda body, headers: body,
    "slack": lambda body, headers: b"v0:" + headers["X-Slack-Request-Timestamp"].encode() + b":" + body,
}


SECTIONS: dict[str, Callable[[], list[Row]]] = {"verify": big_body, "providers": providers}
