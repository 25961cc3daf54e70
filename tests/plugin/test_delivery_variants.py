"""``signed_delivery`` variants and overrides behave as the sender's would, whatever the order."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Hooks

WHSEC = "whsec_" + base64.b64encode(b"n" * 24).decode()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    secrets = {"HOOKS_STRIPE_SECRET": WHSEC, "HOOKS_NOUKAI_SECRET": "n-key", "HOOKS_SLACK_SECRET": "s-key"}
    app = make_app(Hooks(store="memory://"), **secrets)
    for name in ("stripe", "noukai", "slack"):
        Hooks(app, name=name, provider=name, store="memory://")
    return app


@pytest.mark.parametrize(
    ("receiver", "header", "value"),
    [
        ("stripe", "stripe-signature", "t=1,v1=" + "0" * 64),
        ("noukai", "x-noukai-signature", "v1=" + "0" * 64),
    ],
)
def test_a_header_given_in_another_case_replaces_the_signed_one(
    signed_delivery: Any, receiver: str, header: str, value: str
) -> None:
    # Both were sent and joined ("<valid>, <wrong>"), and the valid slot still verified: a 200.
    delivery = signed_delivery("thing.created", {"a": 1}, receiver=receiver)
    assert delivery.send(headers={header: value}).status_code == 401
    forged = signed_delivery("thing.created", {"a": 1}, receiver=receiver, headers={header: value})
    assert [name for name in forged.headers if name.lower() == header] == [header]
    assert forged.send().status_code == 401


def test_a_tampered_copy_stays_tampered_when_re_signed(signed_delivery: Any, webhook_clock: Any) -> None:
    tampered = signed_delivery("thing.created", receiver="stripe").tampered()
    assert tampered.timestamped  # it was False: stale() said Stripe signs no timestamp
    assert tampered.stale().send().status_code == 401
    webhook_clock.advance(30)
    again = tampered.signed_at(int(webhook_clock.now()))
    assert again.send().status_code == 401  # re-signed the tampered bytes: a valid delivery
    assert again.body == tampered.body


def test_an_empty_id_is_forged_as_given(signed_delivery: Any) -> None:
    delivery = signed_delivery("thing.created", receiver="hooks", id="")
    assert delivery.outgoing.id == ""  # a random id stood in for it


def test_a_custom_schedule_waits_its_first_delay(signed_delivery: Any, webhook_sender: Any) -> None:
    delivery = signed_delivery("order.paid", receiver="hooks")
    report = webhook_sender([5, 10], timeout=2).send(delivery, faults=[500])
    assert report.offsets == [5, 15]


def test_a_form_body_is_posted_as_a_form(signed_delivery: Any) -> None:
    body = b"token=x&team_id=T1&command=%2Fweather&text=94070&trigger_id=1334.7384.8088"
    delivery = signed_delivery("command.weather", body=body, receiver="slack")
    assert delivery.headers["Content-Type"] == "application/x-www-form-urlencoded"  # as Slack sends it
    assert delivery.send().status_code == 200 and delivery.type == "command.weather"
