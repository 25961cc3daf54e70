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
from .common import SECRET, Fact, Result, Row, generic_request

MIB = 1024 * 1024
TOLERANCE = (300.0, 300.0)


def per_call(func: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Best-of-``rounds`` CPU seconds per call."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            func()
        best = min(best, (time.process_time() - start) / n)
    return best


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
            per_call(ours, 100),
            per_call(bare, 100),
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
            note="the request keeps one copy (the body bytes); verify adds none. The peak is "
            "werkzeug's get_data (reads chunks, then joins them: 2 copies) and json.loads "
            "(decodes to str, then builds the payload's strings), the same in both apps",
        )
    ]


# Each preset against the sender's own library (or a plain hmac reference). --------------


def _signed(name: str, secret: str, now: int) -> tuple[Provider, tuple[bytes, ...], bytes, dict[str, str]]:
    provider = PRESETS[name]()
    keys = provider.keys([secret])
    payload = {"object": {"id": "obj_1", "amount": 1999, "items": [{"sku": f"sku-{i}"} for i in range(40)]}}
    request = provider.sign(Outgoing("order.created", payload, "evt_bench", now), keys[0])
    return provider, keys, request.body, request.headers


def _reference(
    name: str, secret: str, body: bytes, headers: dict[str, str]
) -> tuple[Callable[[], object], str]:
    """The sender library's verify for ``name``, or a plain hmac reference."""
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

        sig = headers["Stripe-Signature"]
        return (lambda: stripe.WebhookSignature.verify_header(body, sig, secret, 300)), (
            "stripe.WebhookSignature.verify_header"
        )
    key = secret.encode()
    if name == "github":
        given = headers["X-Hub-Signature-256"]
        return (
            lambda: hmac.compare_digest("sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(), given)
        ), "plain hmac"
    if name == "shopify":
        given = headers["X-Shopify-Hmac-Sha256"]
        return (
            lambda: hmac.compare_digest(
                base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode(), given
            )
        ), "plain hmac"
    if name == "slack":
        ts, given = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]

        def slack() -> bool:
            if abs(time.time() - int(ts)) > 300:
                raise ValueError("stale")
            base = b"v0:" + ts.encode() + b":" + body
            return hmac.compare_digest("v0=" + hmac.new(key, base, hashlib.sha256).hexdigest(), given)

        return slack, "plain hmac"
    if name == "generic":
        given = headers["X-Webhook-Signature"]
        return (
            lambda: hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), given)
        ), "plain hmac"
    raise LookupError(name)


def providers() -> list[Row]:
    rows: list[Row] = []
    secret = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef!!").decode()
    now = int(time.time())
    for name in sorted(PRESETS):
        provider, keys, body, headers = _signed(name, secret, now)
        try:
            reference, what = _reference(name, secret, body, headers)
        except (LookupError, ImportError):
            continue
        hdrs = Headers(headers)
        assert reference() is not False, name

        def ours(
            provider: Provider = provider, body: bytes = body, hdrs: Headers = hdrs, keys: Any = keys
        ) -> object:
            return provider.verify(hdrs, body, keys, now=time.time(), tolerance=TOLERANCE)

        rows.append(
            Result(
                "providers",
                f"{name} verify ({len(body)} B) vs {what}",
                per_call(ours, 3000),
                per_call(reference, 3000),
                "s",
                1.0,
            )
        )
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"verify": big_body, "providers": providers}
