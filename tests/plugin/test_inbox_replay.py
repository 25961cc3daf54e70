"""The plugin and the inbox together, as a user's test suite uses them."""

from __future__ import annotations

import pytest

USER_TESTS = '''
import pytest
from flask import Flask
from flask_hooks import Hooks

hooks = Hooks(store="memory://")
bug = {"fixed": False}
calls = []


@hooks.on("invoice.paid", name="billing.book")
def book(event):
    calls.append(event.replayed)
    if not bug["fixed"]:
        raise LookupError("no such customer")


@pytest.fixture
def app(tmp_path):
    bug["fixed"] = False
    calls.clear()
    app = Flask("user_app", instance_path=str(tmp_path))
    app.config.update(HOOKS_SECRET="s3cret")
    hooks.init_app(app)
    return app


def test_a_sent_delivery_is_in_the_inbox(app, signed_delivery):
    delivery = signed_delivery("invoice.paid", {"amount": 10})
    assert delivery.send().status_code == 500
    kept = hooks.inbox(app).get(delivery.id)
    assert kept.status == "failed" and kept.handlers == {"billing.book": "failed"}
    assert kept.body == delivery.body


def test_the_sender_gives_up_and_the_operator_replays_after_the_fix(app, signed_delivery, webhook_sender):
    delivery = signed_delivery("invoice.paid", {"amount": 10})
    report = webhook_sender(schedule="archived").send(delivery)
    assert report.exhausted and report.disabled
    assert [a.status for a in report.attempts] == [500] * 5
    bug["fixed"] = True
    after = hooks.inbox(app).replay(delivery.id)
    assert after.status == "received"
    assert calls == [False] * 5 + [True]
    assert [a.outcome for a in after.attempts][-1] == "replayed"
    assert delivery.resend().get_json() == {"status": "duplicate"}
'''


def test_the_sender_gives_up_then_an_inbox_replay(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
