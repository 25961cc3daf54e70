"""Handler counts when a later handler fails: the ones before it ran, and succeeded.

A delivery's handlers run in order; when one raises, those before it are
recorded as done and the sender's retry runs only the rest. The simulator's
``handler_calls`` and ``hook_signals`` count those earlier runs too, so a
handler that ran again on a retry is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks


class Calls:
    """Two handlers on ``order``: ``ledger.book`` works, ``mail.send`` fails ``failures`` times."""

    def __init__(self) -> None:
        self.failures = 2
        self.runs = {"ledger.book": 0, "mail.send": 0}

    def book(self, event: Event) -> None:
        self.runs["ledger.book"] += 1

    def send(self, event: Event) -> None:
        self.runs["mail.send"] += 1
        if self.runs["mail.send"] <= self.failures:
            raise ConnectionError("smtp down")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def hooks(calls: Calls) -> Hooks:
    hooks = Hooks(store="memory://")
    hooks.on("order", name="ledger.book")(calls.book)
    hooks.on("order", name="mail.send")(calls.send)
    return hooks


@pytest.fixture
def app(make_app: Callable[..., Flask], hooks: Hooks) -> Flask:
    return make_app(hooks)


def test_the_report_counts_a_handler_that_ran_before_one_that_failed(
    calls: Calls, webhook_sender: Any, signed_delivery: Any, hook_signals: Any
) -> None:
    delivery = signed_delivery("order.paid")

    report = webhook_sender(schedule="archived").send(delivery)

    assert report.statuses == [500, 500, 200]
    assert calls.runs == {"ledger.book": 1, "mail.send": 3}
    assert report.handler_calls == calls.runs
    assert hook_signals.handler_calls(delivery.id) == calls.runs
    hook_signals.assert_processed_once(delivery.id)


def test_processed_once_catches_a_handler_that_succeeded_then_ran_again(
    app: Flask, hooks: Hooks, calls: Calls, signed_delivery: Any, hook_signals: Any
) -> None:
    calls.failures = 1
    delivery = signed_delivery("order.paid")
    assert delivery.send().status_code == 500  # ledger.book succeeded, mail.send failed
    hooks.inbox(app).forget(delivery.id)  # so the retry runs both again
    assert delivery.resend().status_code == 200

    with pytest.raises(AssertionError, match=r"(?m)run more than once: ledger\.book$"):
        hook_signals.assert_processed_once(delivery.id)
