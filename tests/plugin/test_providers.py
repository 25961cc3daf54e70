"""``signed_delivery`` works for every provider preset, through its own signer.

Parametrized over the registry, so a preset added later is covered too.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import ConfigError, Event, Hooks
from flask_hooks.core.providers.registry import PRESETS

#: Secret shapes to try, newest first; a preset takes the first it accepts.
SECRETS = [
    ["plain-secret-new", "plain-secret-old"],
    ["whsec_" + base64.b64encode(b"n" * 24).decode(), "whsec_" + base64.b64encode(b"o" * 24).decode()],
]
#: The event type each scheme can carry (Narada's type is the task status).
TYPES = {"narada": "success"}
#: Schemes that authenticate the sender without signing the body (Narada's webhook documentation:
#: a bearer token and an echoed secret), so a changed byte goes unnoticed.
UNSIGNED_BODY = {"narada"}


@pytest.fixture(params=sorted(PRESETS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def handled() -> list[Event]:
    return []


@pytest.fixture
def app(make_app: Callable[..., Flask], provider: str, handled: list[Event]) -> Flask:
    for secrets in SECRETS:
        hooks = Hooks(provider=provider, secret=secrets, store="memory://")
        hooks.on("*")(handled.append)
        try:
            return make_app(hooks)
        except ConfigError:
            continue
    pytest.fail(f"no test secret suits provider {provider!r}")


def forge(signed_delivery: Any, provider: str, **kwargs: Any) -> Any:
    return signed_delivery(TYPES.get(provider, "order.paid"), {"data": {"amount": 5}}, **kwargs)


def test_send_then_resend(provider: str, signed_delivery: Any, handled: list[Event]) -> None:
    delivery = forge(signed_delivery, provider)

    first = delivery.send()
    again = delivery.resend()

    assert first.status_code == 200, first.data
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    assert [event.id for event in handled] == [delivery.id]
    assert handled[0].type == delivery.type
    assert handled[0].body == delivery.body


def test_tampered_is_rejected(app: Flask, provider: str, signed_delivery: Any, handled: list[Event]) -> None:
    original = forge(signed_delivery, provider)
    delivery = original.tampered()
    assert len(delivery.body) == len(original.body) and delivery.body != original.body

    response = delivery.send()

    if provider in UNSIGNED_BODY:
        assert response.status_code == 200
        return
    assert response.status_code == app.extensions["hooks"].receivers["hooks"].provider.rejection_status
    assert handled == []


def test_stale_is_rejected_or_explained(
    app: Flask, provider: str, signed_delivery: Any, handled: list[Event]
) -> None:
    delivery = forge(signed_delivery, provider)
    if not delivery.timestamped:
        with pytest.raises(ValueError, match=f"provider '{provider}' signs no timestamp"):
            delivery.stale()
        return

    response = delivery.stale().send()

    assert response.status_code == app.extensions["hooks"].receivers["hooks"].provider.rejection_status
    assert handled == []
    assert delivery.send().status_code == 200  # the fresh one still passes


def test_an_older_secret_during_rotation(provider: str, signed_delivery: Any, handled: list[Event]) -> None:
    response = forge(signed_delivery, provider, secret_index=1).send()

    assert response.status_code == 200, response.data
    assert handled[0].secret_index == 1


def test_given_id_and_headers(provider: str, signed_delivery: Any, handled: list[Event]) -> None:
    delivery = forge(signed_delivery, provider, id="evt_fixed_1", headers={"X-Trace": "t-1"})

    assert delivery.send().status_code == 200
    assert "evt_fixed_1" in delivery.id  # Narada's dedupe id is requestId:status
    assert handled[0].headers["X-Trace"] == "t-1"


def test_secret_index_out_of_range(provider: str, signed_delivery: Any) -> None:
    with pytest.raises(IndexError, match="has 2 secret\\(s\\); secret_index=5 is out of range"):
        forge(signed_delivery, provider, secret_index=5)


def test_resigning_for_a_retry_keeps_the_id(provider: str, signed_delivery: Any, webhook_clock: Any) -> None:
    delivery = forge(signed_delivery, provider)
    webhook_clock.advance(7200)

    retry = delivery.signed_at(int(webhook_clock.now()))

    assert retry.id == delivery.id
    assert retry.send().status_code == 200
