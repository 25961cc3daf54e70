"""Misuse and real bugs fail with a message that says what happened."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

Project = Callable[..., pytest.RunResult]


def test_no_app_fixture_names_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(signed_delivery):
            pass

        def test_clock(webhook_clock):
            pass

        def test_sender(webhook_sender):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        ["*signed_delivery needs an `app` fixture that returns your Flask app*", "*def app():*"]
    )
    result.stdout.fnmatch_lines(["*webhook_clock needs an `app` fixture*"])
    result.stdout.fnmatch_lines(["*webhook_sender needs an `app` fixture*"])
    for noise in ("*Traceback*", "*FixtureLookupError*", "*During handling*", "*SubRequest*"):
        result.stdout.no_fnmatch_line(noise)


def test_an_app_fixture_missing_a_fixture_is_not_blamed_on_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def app(database):
            return None

        def test_it(signed_delivery):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'database' not found*"])
    result.stdout.no_fnmatch_line("*needs an `app` fixture*")


def test_provider_api_without_responses_names_the_extra(pytester: pytest.Pytester) -> None:
    # A fresh interpreter: this process has imported responses already.
    pytester.makeconftest(
        """
        import sys

        import pytest
        from flask import Flask

        sys.modules["responses"] = None  # as if it were not installed

        @pytest.fixture
        def app():
            return Flask("bare")
        """
    )
    pytester.makepyfile(
        """
        def test_it(provider_api):
            pass

        def test_the_other_fixtures_still_work(hook_signals):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*provider_api needs the `responses` package*pip install 'flask-webhooks?pytest?'"]  # ? : [ and ]
    )
    for noise in ("*Traceback*", "*ModuleNotFoundError*", "*During handling*"):
        result.stdout.no_fnmatch_line(noise)


def test_an_app_without_receivers_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from flask import Flask

        @pytest.fixture
        def app():
            return Flask("bare")

        def test_it(signed_delivery):
            signed_delivery("order.paid")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*has no flask_hooks receiver; call Hooks.init_app(app)*"])
    for noise in ("*LookupError*", "*During handling*", "*def forge(*"):
        result.stdout.no_fnmatch_line(noise)


def test_the_default_sqlite_file_is_warned_about(pytester: pytest.Pytester) -> None:
    """Shared by every test and run: a fixed id was a duplicate the second time. Said once
    a session, and not of an instance folder under pytest's temporary ones."""
    pytester.makepyfile(
        """
        import os
        import pytest
        from flask import Flask
        from flask_hooks import Hooks

        @pytest.fixture(params=["project", "temporary"])
        def app(request, tmp_path):
            where = os.path.join(os.getcwd(), "instance") if request.param == "project" else tmp_path
            app = Flask("shop", instance_path=str(where))
            app.config["HOOKS_SECRET"] = "s3cret"
            Hooks(app)
            return app

        @pytest.mark.parametrize("n", [1, 2])
        def test_it(app, signed_delivery, webhook_sender, n):
            assert signed_delivery("order.paid").send().status_code == 200
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, warnings=1)
    result.stdout.fnmatch_lines(["*receivers keep their records in *instance/flask_hooks.sqlite3, shared*"])
    result.stdout.no_fnmatch_line("*basetemp*flask_hooks.sqlite3*")


def test_several_receivers_need_a_name(user_project: Project) -> None:
    result = user_project(
        source="""
        from flask_hooks import Hooks

        def test_it(app, signed_delivery):
            Hooks(app, name="github", provider="github", secret="gh")
            signed_delivery("order.paid")
        """
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the app has several receivers ('hooks', 'github'); pass receiver=<name>*"])


def test_a_wrong_secret_shows_the_rejection(user_project: Project) -> None:
    # The sender still signs with a secret the app no longer has.
    result = user_project(
        source="""
        import hashlib, hmac

        def test_it(signed_delivery, hook_signals):
            delivery = signed_delivery("order.paid")
            old = hmac.new(b"old-secret", delivery.body, hashlib.sha256).hexdigest()
            delivery.send(headers={"X-Webhook-Signature": old})
            hook_signals.assert_processed_once(delivery.id)
        """
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: delivery 'evt_*' was never processed (1 delivery(ies) rejected)",
            "*delivery_rejected(receiver='hooks', reason='signature mismatch')*",
        ]
    )


def test_a_handler_that_ran_twice_fails_processed_once(user_project: Project) -> None:
    # Past the dedupe window the same delivery is new again: a real double run.
    result = user_project(
        source="""
        def test_it(signed_delivery, webhook_clock, hook_signals):
            delivery = signed_delivery("order.paid", id="evt_twice")
            delivery.send()
            webhook_clock.advance(2 * 86400)
            delivery.resend()
            hook_signals.assert_processed_once(delivery.id)
        """
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: delivery 'evt_twice' was processed 2 times;"
            " handler(s) run more than once: shop.fulfil",
            "*event_handled(receiver='hooks', id='evt_twice', handlers=('shop.fulfil',))",
        ]
    )


def test_assertion_failures_point_at_the_test_not_the_plugin(user_project: Project) -> None:
    result = user_project(
        source="""
        def test_processed(signed_delivery, hook_signals):
            signed_delivery("order.paid").tampered().send()
            hook_signals.assert_processed_once("evt_missing")

        def test_rejected(hook_signals):
            hook_signals.assert_rejected()

        def test_no_job(provider_api):
            provider_api.last_job
        """
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            '>*hook_signals.assert_processed_once("evt_missing")',
            "E*AssertionError: delivery 'evt_missing' was never processed (1 delivery(ies) rejected)",
        ]
    )
    result.stdout.fnmatch_lines(
        [">*hook_signals.assert_rejected()", "E*AssertionError: expected a rejection*"]
    )
    result.stdout.fnmatch_lines([">*provider_api.last_job", "E*AssertionError: no job was submitted*"])
    for source in ("*def assert_processed_once*", "*def assert_rejected*", "*def last_job*", "*recorder.py*"):
        result.stdout.no_fnmatch_line(source)


def test_assert_rejected_lists_what_was_seen(user_project: Project) -> None:
    result = user_project(
        source="""
        def test_it(signed_delivery, hook_signals):
            signed_delivery("order.paid").send()
            hook_signals.assert_rejected("timestamp")
        """
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*expected a rejection with reason 'timestamp'; rejections seen: none"])


def test_an_unexpected_outbound_call_fails_loudly(user_project: Project) -> None:
    result = user_project(
        source="""
        import requests

        def test_it(provider_api):
            provider_api.narada()
            try:
                requests.post("https://api.narada.ai/v1/other", json={}, timeout=1)
            except requests.ConnectionError:
                pass  # code under test swallowing the error must not hide it
        """
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*provider_api.narada() was set up but no job was submitted*",
            "*unexpected outbound call POST https://api.narada.ai/v1/other",
        ]
    )


def test_a_refused_job_says_why(user_project: Project) -> None:
    result = user_project(
        source="""
        import requests

        def test_it(provider_api):
            provider_api.narada()
            try:
                requests.post("https://api.narada.ai/fast/v2/remote-dispatch", data="not json", timeout=1)
            except AssertionError:
                pass  # swallowed by the code under test
        """
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*POST https://api.narada.ai/fast/v2/remote-dispatch was refused: *body is not a JSON object*"]
    )
    result.stdout.no_fnmatch_line("*unexpected outbound call*")


@pytest.mark.parametrize("fixture", ["webhook_clock", "webhook_sender"])
def test_the_clock_and_the_sender_need_a_receiver(pytester: pytest.Pytester, fixture: str) -> None:
    # webhook_sender's message named webhook_clock, which the test never asked for.
    pytester.makepyfile(
        f"""
        import pytest
        from flask import Flask

        @pytest.fixture
        def app():
            return Flask("bare")

        def test_it({fixture}):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{fixture}: the app from your `app` fixture has no flask_hooks*"])


def test_the_clock_only_moves_forward() -> None:
    from pytest_hooks.clock import FakeClock

    clock = FakeClock(start=100)
    assert clock() == clock.now() == 100
    assert clock.advance(5) == 105 and clock.elapsed == 5
    assert clock.advance_to(50) == 105
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_the_clock_takes_only_finite_times(value: float) -> None:
    from pytest_hooks.clock import FakeClock

    clock = FakeClock(start=100)
    for move in (clock.advance, clock.advance_to):
        with pytest.raises(ValueError, match="a finite number of seconds"):
            move(value)
    assert clock() == 100
    with pytest.raises(ValueError, match="start takes a finite number of seconds"):
        FakeClock(start=value)
    late = FakeClock(start=1e308)
    with pytest.raises(ValueError, match="a finite number of seconds"):
        late.advance(1e308)  # the sum overflows to infinity
    assert late() == 1e308


def test_assert_processed_once_with_one_id_on_two_receivers(pytester: pytest.Pytester) -> None:
    """Receivers keep their own ids: the same id handled once by each was "processed 2 times"."""
    pytester.makepyfile(
        """
        import pytest
        from flask import Flask
        from flask_hooks import Hooks

        shop = Hooks(name="shop", url="/shop", store="memory://", secret="s3cret-shop")
        billing = Hooks(name="billing", url="/billing", store="memory://", secret="s3cret-billing")
        shop.on("order.paid")(lambda event: None)
        billing.on("order.paid")(lambda event: None)

        @pytest.fixture
        def app(tmp_path):
            app = Flask("two_receivers", instance_path=str(tmp_path))
            shop.init_app(app)
            billing.init_app(app)
            return app

        def test_each_once(signed_delivery, hook_signals):
            for receiver in ("shop", "billing"):
                assert signed_delivery("order.paid", id="evt_1", receiver=receiver).send().status_code == 200
            hook_signals.assert_processed_once("evt_1", receiver="shop")
            hook_signals.assert_processed_once("evt_1", receiver="billing")
            assert len(hook_signals.for_id("evt_1", receiver="shop")) == 2  # verified, handled

        def test_which_one(signed_delivery, hook_signals):
            for receiver in ("shop", "billing"):
                signed_delivery("order.paid", id="evt_1", receiver=receiver).send()
            hook_signals.assert_processed_once("evt_1")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    wanted = "*delivery 'evt_1' reached the receivers 'billing', 'shop', each with its own ids:"
    result.stdout.fnmatch_lines([wanted + " pass receiver=<name>*"])


def test_a_failed_assertion_on_a_report_shows_what_the_sender_saw(user_project: Project) -> None:
    """pytest prints the report's repr, cut at 240 characters: it must fit and say what happened."""
    result = user_project(
        source="""
        def test_it(app, signed_delivery, webhook_sender):
            delivery = signed_delivery("order.paid", id="evt_down")
            app.config["FAILURES"]["evt_down"] = 9
            report = webhook_sender(schedule="archived").send(delivery, faults=[None, "timeout"])
            assert report.delivered

        def test_attempt(app, signed_delivery, webhook_sender):
            report = webhook_sender(schedule="github").send(signed_delivery("order.paid"), faults=[503])
            assert report.attempts[0].ok
        """
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*where False = <Report archived: exhausted (endpoint disabled); attempts +0s 500,"
            " +60s timeout, +300s 500, +1800s 500, +7200s 500; handler calls {'shop.fulfil': 5}>.delivered",
            "E*where False = Attempt(number=1, offset=0, status=503, fault=503).ok",
        ]
    )
