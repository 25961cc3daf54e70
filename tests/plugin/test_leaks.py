"""Nothing outlives a test: signal receivers are disconnected, clocks restored."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_signals_and_clock_are_restored_after_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from flask import Flask
        from flask_hooks import Hooks, signals
        from flask_hooks.core.clock import system_clock
        from flask_hooks.extension import get_state

        NAMES = ["delivery_received", "delivery_verified", "delivery_rejected",
                 "delivery_duplicate", "event_handled", "event_ignored", "handler_failed"]
        BEFORE = {}

        def counts():
            return {name: len(getattr(signals, name).receivers) for name in NAMES}

        @pytest.fixture(scope="module")
        def app():
            app = Flask("leaky")
            app.config.update(HOOKS_SECRET="s", HOOKS_STORE="memory://")
            Hooks(app)
            Hooks(app, name="other", secret="t")
            return app

        def test_0_before(app):
            BEFORE.update(counts())

        def test_1_uses_everything(app, webhook_clock, hook_signals, signed_delivery, webhook_sender):
            receivers = get_state(app).receivers.values()
            assert all(r.clock is webhook_clock for r in receivers)
            assert counts() != BEFORE  # the recorder is connected now
            delivery = signed_delivery("x.y", receiver="hooks")
            webhook_sender(schedule="archived").send(delivery, faults=[500])
            assert len(hook_signals) > 0

        def test_1b_webhook_sender_alone_freezes_every_receiver(app, webhook_sender, request):
            clock = request.getfixturevalue("webhook_clock")  # the one it installed
            assert all(r.clock is clock for r in get_state(app).receivers.values())

        def test_2_fails_midway(app, webhook_clock, hook_signals):
            webhook_clock.advance(10)
            raise RuntimeError("a failing test must not leak either")

        def test_3_after(app):
            assert counts() == BEFORE
            assert all(r.clock is system_clock for r in get_state(app).receivers.values())
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_2_fails_midway*"])


def test_loading_the_plugin_imports_no_flask() -> None:
    """Projects without a Flask app pay nothing for the installed plugin."""
    code = (
        "import sys, pytest_hooks.plugin;"
        " print(sorted(m for m in ('flask', 'flask_hooks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
