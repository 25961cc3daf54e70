"""How long each sender keeps retrying, against how long a receiver remembers a delivery.

A delivery whose 2xx was lost, then whose retries never reach the app, comes back at
the sender's last attempt. The receiver answers it as a duplicate only while it still
remembers the id (``HOOKS_DEDUPE_TTL``): the deployment guide's advice to set the TTL
above the sender's retry window, with each window as the presets (SENDERS.md) give it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOUR = 3600
#: preset -> (receiver provider, secret, seconds from the first attempt to the last).
WINDOWS = {
    "standard-webhooks": ("standard-webhooks", WHSEC, 272105),  # 75.6 h: the spec's schedule
    "svix": ("svix", WHSEC, 99305),  # 27.6 h: 8 attempts
    "stripe": ("stripe", "whsec_test_secret", 72 * HOUR),  # "up to 3 days"
}


@pytest.fixture
def schedule(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ttl(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def handled() -> list[Event]:
    return []


@pytest.fixture
def app(make_app: Callable[..., Flask], schedule: str, ttl: int, handled: list[Event]) -> Flask:
    provider, secret, _ = WINDOWS[schedule]
    hooks = Hooks(provider=provider, secret=secret, store="memory://", dedupe_ttl=ttl)
    hooks.on("*")(handled.append)
    return make_app(hooks)


@pytest.mark.parametrize("schedule", sorted(WINDOWS), indirect=True)
@pytest.mark.parametrize("ttl", [86400, 4 * 86400], indirect=True, ids=["default-1-day", "4-days"])
def test_a_lost_answer_runs_again_only_past_the_dedupe_ttl(
    schedule: str, ttl: int, webhook_sender: Any, signed_delivery: Any, handled: list[Event]
) -> None:
    sender = webhook_sender(schedule=schedule)
    middle = len(sender.preset.schedule) - 2
    report = sender.send(signed_delivery("invoice.paid"), faults=["lost", *["reset"] * middle])

    window = WINDOWS[schedule][2]
    assert report.delivered and report.offsets[-1] == window
    assert window > 86400  # longer than the default TTL: the guide's advice matters here
    runs = 2 if ttl < window else 1
    assert len(handled) == runs and sum(report.handler_calls.values()) == runs
    assert report.attempts[-1].response is not None
    last = report.attempts[-1].response.json
    assert last == ({"status": "received"} if runs == 2 else {"status": "duplicate"})
