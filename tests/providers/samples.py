"""Per-provider samples shared by the provider tests (plain data, no fixtures)."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from flask_hooks.core.event import Headers
from flask_hooks.core.providers import (
    FlowStep,
    Generic,
    GitHub,
    ItsDangerous,
    Narada,
    Noukai,
    Outgoing,
    Provider,
    Shopify,
    Slack,
    StandardWebhooks,
    Stripe,
    Svix,
)

NOW = 1_700_000_000
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"old-old-old-old-old-old!").decode()


@dataclasses.dataclass
class Case:
    """One provider with a working secret, an outgoing event and what it parses to."""

    provider: Provider
    secrets: list[str]
    outgoing: Outgoing
    id: str
    type: str
    #: Headers the provider reads (malformed-input tables mutate these).
    headers: tuple[str, ...]
    #: Whether changing a body byte must fail verification.
    body_signed: bool = True
    #: Headers whose absence or garbling must fail verification (default: the first).
    auth: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = self.headers[:1]

    @property
    def name(self) -> str:
        return self.provider.name


def _out(type: str, id: str = "dlv_1") -> Outgoing:
    return Outgoing(type=type, payload={"amount": 100}, id=id, timestamp=NOW)


def cases() -> list[Case]:
    return [
        Case(
            Generic(),
            ["s3cret", "old"],
            _out("resource.created"),
            "dlv_1",
            "resource.created",
            ("X-Webhook-Signature", "X-Webhook-Id"),
        ),
        Case(
            Noukai(),
            ["nk_new", "nk_old"],
            _out("job.completed"),
            "dlv_1",
            "job.completed",
            ("X-Noukai-Signature", "X-Noukai-Delivery"),
        ),
        Case(
            Noukai(signed="timestamp.body"),
            ["nk_new"],
            _out("job.completed"),
            "dlv_1",
            "job.completed",
            ("X-Noukai-Signature", "X-Noukai-Delivery"),
        ),
        Case(
            Narada(token=["tok_new", "tok_old"], secret="cb_secret"),
            [],
            _out("success", "req_1"),
            "req_1:success",
            "success",
            ("Authorization",),
            body_signed=False,
        ),
        Case(
            FlowStep(),
            ["wsk_upsjOIYYLME2zLPaiDDe9BpXP2ZS8xnw"],
            _out("step_b", "mqr_1"),
            "mqr_1:step_b",
            "step_b",
            (),
        ),
        Case(
            StandardWebhooks(),
            [WHSEC, WHSEC_OLD],
            _out("invoice.paid", "msg_1"),
            "msg_1",
            "invoice.paid",
            ("webhook-id", "webhook-timestamp", "webhook-signature"),
            auth=("webhook-id", "webhook-timestamp", "webhook-signature"),
        ),
        Case(
            Svix(),
            [WHSEC],
            _out("invoice.paid", "msg_1"),
            "msg_1",
            "invoice.paid",
            ("svix-id", "svix-timestamp", "svix-signature"),
            auth=("svix-id", "svix-timestamp", "svix-signature"),
        ),
        Case(
            Stripe(),
            ["whsec_test_secret", "whsec_old"],
            _out("payment_intent.succeeded", "evt_1"),
            "evt_1",
            "payment_intent.succeeded",
            ("Stripe-Signature",),
        ),
        Case(
            GitHub(),
            ["gh-secret"],
            _out("issues.opened", "guid-1"),
            "guid-1",
            "issues.opened",
            ("X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"),
        ),
        Case(
            Shopify(),
            ["shpss_secret"],
            _out("orders/create", "wh-1"),
            "wh-1",
            "orders/create",
            ("X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Webhook-Id"),
        ),
        Case(
            Slack(),
            ["8f742231b10e8888abcd99yyyzzz85a5"],
            _out("app_mention", "Ev1"),
            "Ev1",
            "app_mention",
            ("X-Slack-Signature", "X-Slack-Request-Timestamp", "X-Slack-Retry-Num"),
            auth=("X-Slack-Signature", "X-Slack-Request-Timestamp"),
        ),
        Case(
            ItsDangerous(),
            ["flask-secret", "old-flask-secret"],
            _out("order.shipped"),
            "dlv_1",
            "order.shipped",
            ("X-Hooks-Signature", "X-Hooks-Id"),
        ),
    ]


def case_id(case: Case) -> str:
    extra = "-t" if isinstance(case.provider, Noukai) and case.provider.signed != "auto" else ""
    return case.name + extra


def signed(case: Case, index: int = 0) -> tuple[Headers, bytes, tuple[bytes, ...]]:
    """The case's delivery signed with its secret at ``index``, and the keys."""
    keys = case.provider.keys(case.secrets)
    request = case.provider.sign(case.outgoing, keys[index])
    return Headers(request.headers), request.body, keys


def replaced(headers: Headers, **changes: str | None) -> Headers:
    """A copy of ``headers`` with some set (``None`` removes)."""
    items = dict(headers.items())
    for name, value in changes.items():
        items.pop(name.lower(), None)
        if value is not None:
            items[name.lower()] = value
    return Headers(items)


def body_changed(body: bytes) -> bytes:
    """The same JSON with one value changed (the signature no longer matches)."""
    assert b"100" in body
    return body.replace(b"100", b"999", 1)


def as_json(body: bytes) -> Any:
    return json.loads(body)
