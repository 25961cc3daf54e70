"""``webhook_sender`` presets follow each sender's published rules: schedules, timeouts and stop rules."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, request

from flask_hooks import Event, Hooks, signals
from pytest_hooks.clock import FakeClock
from pytest_hooks.presets import PRESETS
from pytest_hooks.sender import Sender

Script = list[Any]


def cumulative(*delays: float) -> list[float]:
    return list(itertools.accumulate(delays))


MIN, HOUR = 60, 3600
EXPECTED = {
    "archived": ([0, 60, 300, 1800, 7200], True),
    "noukai": (cumulative(0, MIN, 5 * MIN, 30 * MIN, 2 * HOUR), False),
    "standard-webhooks": (
        cumulative(0, 5, 5 * MIN, 30 * MIN, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR, 20 * HOUR, 24 * HOUR),
        False,
    ),
    "svix": (cumulative(0, 5, 300, 1800, 7200, 18000, 36000, 36000), False),
    "stripe": (cumulative(0, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR, 24 * HOUR, 17 * HOUR), False),
    "shopify": (cumulative(0, 2 * MIN, 4 * MIN, 8 * MIN, 16 * MIN, 32 * MIN, 64 * MIN, 114 * MIN), True),
    "slack": ([0, 0, 60, 360], False),
    "github": ([0], False),
}


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> str:
    """The receiver's provider; ``parametrize("provider", [...])``."""
    return str(getattr(request, "param", "generic"))


@pytest.fixture
def script() -> Script:
    """Responses to force, one per request (None: the app's own answer)."""
    return []


@pytest.fixture
def seen() -> list[dict[str, str]]:
    """The headers of every request that reached the app."""
    return []


@pytest.fixture
def moved() -> list[float]:
    """How far each slow handler's own ``advance`` moved the clock."""
    return []


@pytest.fixture
def checks() -> list[Callable[[int], None]]:
    """Run as each request starts, with its number (a test's own checks of the app)."""
    return []


@pytest.fixture
def app(
    make_app: Callable[..., Flask],
    provider: str,
    script: Script,
    seen: list[dict[str, str]],
    moved: list[float],
    checks: list[Callable[[int], None]],
) -> Flask:
    hooks = Hooks(provider=provider, store="memory://")

    @hooks.on("*")
    def handle(event: Event) -> None:
        slow = event.payload.get("slow") if isinstance(event.payload, dict) else None
        if slow:
            clock = app.extensions["hooks"].receivers["hooks"].clock
            before = clock()
            moved.append(clock.advance(slow) - before)

    app = make_app(hooks)

    @app.before_request
    def record() -> None:
        seen.append(dict(request.headers))
        for check in checks:
            check(len(seen))

    @app.after_request
    def scripted(response: Response) -> Response:
        step = script.pop(0) if script else None
        if step is None:
            return response
        status, headers = step
        return Response(b"{}", status, headers)

    return app


def test_every_preset_is_covered() -> None:
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_schedule_when_every_attempt_fails(name: str, webhook_sender: Any, signed_delivery: Any) -> None:
    offsets, disabled = EXPECTED[name]

    report = webhook_sender(schedule=name).send(signed_delivery("a.b"), faults=[500] * 20)

    assert report.offsets == offsets
    assert report.exhausted and not report.delivered
    assert report.disabled is disabled
    assert report.statuses == [500] * len(offsets)


@pytest.mark.parametrize(("name", "timeout"), [(n, p.timeout) for n, p in PRESETS.items()])
def test_timeouts(name: str, timeout: float, webhook_sender: Any) -> None:
    assert webhook_sender(schedule=name).preset.timeout == timeout
    assert webhook_sender(schedule=name, timeout=1).preset.timeout == 1


def test_published_timeouts() -> None:
    published = {"archived": 5, "noukai": 20, "svix": 15, "github": 10, "shopify": 5, "slack": 3}
    assert {name: PRESETS[name].timeout for name in published} == published
    assert PRESETS["stripe"].approximate and PRESETS["shopify"].approximate and PRESETS["noukai"].approximate
    assert not PRESETS["archived"].approximate and not PRESETS["svix"].approximate


def test_archived_recovers_and_counts_handler_calls(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule="archived").send(
        signed_delivery("a.b"), faults=["reset", "timeout", "lost"]
    )

    assert report.delivered and not report.disabled
    assert [a.fault for a in report.attempts] == ["reset", "timeout", "lost", None]
    assert report.statuses == [None, None, None, 200]
    assert report.offsets == [0, 60, 300, 1800]
    assert sum(report.handler_calls.values()) == 1  # the timeout's run; the rest were duplicates


def test_a_slow_handler_times_out(
    webhook_sender: Any, signed_delivery: Any, webhook_clock: FakeClock
) -> None:
    report = webhook_sender(schedule=[0, 30]).send(signed_delivery("a.b", {"slow": 11}))

    assert [a.fault for a in report.attempts] == ["timeout", None]
    assert report.attempts[1].response is not None
    assert report.attempts[1].response.json == {"status": "duplicate"}
    assert report.offsets == [0, 40]  # the delay counts from the end of the 10 s timeout


def test_a_retry_sent_while_the_handler_runs_meets_its_claim(
    webhook_sender: Any, signed_delivery: Any, seen: list[dict[str, str]]
) -> None:
    # Slack retries 3 s in and again a minute after that, while the handler still runs.
    report = webhook_sender(schedule="slack").send(signed_delivery("app_mention", {"slow": 100}))

    assert report.offsets == [0, 3, 63, 363]
    assert [a.fault for a in report.attempts] == ["timeout", None, None, None]
    assert report.statuses == [None, 409, 409, 200] and report.delivered
    # Its lease was kept while it ran, as the keeper would have: the retry at 63 s did not run it again.
    assert sum(report.handler_calls.values()) == 1
    assert [a.response.headers["Retry-After"] for a in report.attempts[1:3]] == ["60", "60"]
    first = report.attempts[0].response
    assert first is not None and first.status_code == 200  # the app's answer, which no one read
    assert [h.get("X-Slack-Retry-Reason") for h in seen] == [None, "http_timeout", "http_error", "http_error"]


def test_what_goes_wrong_in_a_retry_made_during_a_handler_fails_the_test(
    webhook_sender: Any, signed_delivery: Any, checks: list[Callable[[int], None]]
) -> None:
    # Raised into the running handler's advance(), it was taken for the handler's own
    # failure, and the report said "exhausted" after one attempt: the test passed.
    def second(number: int) -> None:
        assert number != 2, "a retry the test did not expect"

    checks.append(second)
    with pytest.raises(AssertionError, match="a retry the test did not expect"):
        webhook_sender(schedule="slack").send(signed_delivery("a.b", {"slow": 100}))


def test_a_retry_made_during_a_handler_leaves_its_clock_alone(
    webhook_sender: Any, signed_delivery: Any, moved: list[float]
) -> None:
    delivery = signed_delivery("a.b", {"slow": 5})
    report = webhook_sender(schedule="slack").send(delivery, faults=[None, "timeout"])

    assert moved == [5]  # the retry's timeout fault at 3 s moved the handler's clock to 6 s
    assert report.offsets == [0, 3, 66] and report.statuses == [None, None, 200]


def test_a_send_inside_a_request_keeps_the_outer_one_s_retries(
    webhook_sender: Any, signed_delivery: Any, checks: list[Callable[[int], None]]
) -> None:
    inner = signed_delivery("c.d", id="evt_inner")
    checks.append(lambda number: number == 1 and webhook_sender(schedule="github").send(inner))

    report = webhook_sender(schedule="slack").send(signed_delivery("a.b", {"slow": 100}))

    # The inner send's end cleared every alarm on the clock, the outer one's retries too.
    assert report.statuses == [None, 409, 409, 200]


def test_fractional_delays_give_exact_offsets(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule=[0, 0.1, 0.2]).send(signed_delivery("a.b"), faults=[500, 500, 500])

    assert report.offsets == [0, 0.1, 0.1 + 0.2]


def test_offsets_are_when_each_attempt_was_sent(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule="standard-webhooks").send(signed_delivery("a.b", {"slow": 100}))

    assert report.offsets == [0, 20, 320]  # given up at 15 s, retried 5 s later, during the handler
    assert report.statuses == [None, 409, 200]


def test_noukai_treats_3xx_as_permanent(webhook_sender: Any, signed_delivery: Any, script: Script) -> None:
    script.append((302, {"Location": "/elsewhere"}))

    report = webhook_sender(schedule="noukai").send(signed_delivery("a.b"))

    assert report.outcome == "permanent"
    assert report.statuses == [302]
    assert not report.exhausted and not report.delivered and not report.disabled


def test_other_senders_retry_a_3xx(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule="archived").send(signed_delivery("a.b"), faults=[301])

    assert report.statuses == [301, 200]


def test_github_makes_a_single_attempt(webhook_sender: Any, signed_delivery: Any) -> None:
    assert webhook_sender(schedule="github").send(signed_delivery("a.b")).statuses == [200]
    report = webhook_sender(schedule="github").send(signed_delivery("a.b"), faults=["timeout"])
    assert report.offsets == [0] and report.exhausted


@pytest.mark.parametrize("provider", ["slack"])
def test_slack_retries_carry_their_headers(
    provider: str,
    webhook_sender: Any,
    signed_delivery: Any,
    script: Script,
    seen: list[dict[str, str]],
    hook_signals: Any,
) -> None:
    script.extend([(500, {}), (500, {}), (500, {})])

    report = webhook_sender(schedule="slack").send(signed_delivery("app_mention"))

    assert report.delivered and report.offsets == [0, 0, 60, 360]
    assert [h.get("X-Slack-Retry-Num") for h in seen] == [None, "1", "2", "3"]
    assert [h.get("X-Slack-Retry-Reason") for h in seen] == [None, "http_error", "http_error", "http_error"]
    # Re-signed at each attempt: the last one, 6 min later, still verifies.
    assert len({h["X-Slack-Request-Timestamp"] for h in seen}) == 3
    assert hook_signals.of("delivery_rejected") == []


@pytest.mark.parametrize("provider", ["slack"])
def test_slack_timeout_is_retried_after_3_seconds(
    provider: str, webhook_sender: Any, signed_delivery: Any, seen: list[dict[str, str]]
) -> None:
    report = webhook_sender(schedule="slack").send(
        signed_delivery("app_mention"), faults=["timeout", "reset"]
    )

    assert report.offsets == [0, 3, 63]
    assert seen[-1]["X-Slack-Retry-Reason"] == "connection_failed"
    assert seen[-1]["X-Slack-Retry-Num"] == "2"


def test_slack_no_retry_header_stops(webhook_sender: Any, signed_delivery: Any, script: Script) -> None:
    script.append((500, {"X-Slack-No-Retry": "1"}))

    report = webhook_sender(schedule="slack").send(signed_delivery("a.b"))

    assert report.outcome == "no-retry" and len(report.attempts) == 1


def test_slack_follows_two_redirects(webhook_sender: Any, signed_delivery: Any, script: Script) -> None:
    script.extend([(307, {"Location": "/webhooks/"}), (307, {"Location": "https://x.example/webhooks"})])

    report = webhook_sender(schedule="slack").send(signed_delivery("a.b"))

    assert report.statuses == [200]


def test_slack_gives_up_on_a_third_redirect(
    webhook_sender: Any, signed_delivery: Any, script: Script, seen: list[dict[str, str]]
) -> None:
    script.extend([(307, {"Location": "/webhooks"})] * 3)

    report = webhook_sender(schedule="slack").send(signed_delivery("a.b"))

    assert report.statuses == [307, 200]
    assert seen[-1]["X-Slack-Retry-Reason"] == "too_many_redirects"


@pytest.mark.parametrize("schedule", ["svix", "standard-webhooks"])
@pytest.mark.parametrize(("retry_after", "second"), [("100", 10), ("7", 7), ("1", 5)])
def test_svix_clamps_retry_after(
    webhook_sender: Any, signed_delivery: Any, script: Script, schedule: str, retry_after: str, second: float
) -> None:
    # Standard Webhooks says it "should be taken into consideration", as Svix's server does.
    script.append((503, {"Retry-After": retry_after}))

    report = webhook_sender(schedule=schedule).send(signed_delivery("a.b"))

    assert report.offsets == [0, second]


@pytest.mark.parametrize(("schedule", "fault"), [("slack", "timeout"), ("slack", "lost"), ("svix", "lost")])
def test_an_answer_the_sender_never_read_steers_nothing(
    webhook_sender: Any, signed_delivery: Any, script: Script, schedule: str, fault: str
) -> None:
    # The simulator read X-Slack-No-Retry and Retry-After from the app's answer to an
    # attempt that timed out or whose answer was lost: Slack stopped, Svix waited 9 s.
    script.append((503, {"X-Slack-No-Retry": "1", "Retry-After": "9"}))

    report = webhook_sender(schedule=schedule).send(signed_delivery("a.b"), faults=[fault])

    assert report.delivered and len(report.attempts) == 2
    if schedule == "svix":
        assert report.offsets == [0, 5]


def test_svix_waits_a_minute_after_429_or_timeout(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule="svix").send(signed_delivery("a.b"), faults=[429, "timeout"])

    assert report.offsets == [0, 60, 60 + 15 + 300]


@pytest.mark.parametrize(
    ("control", "outcome", "disabled"), [("abort-message", "aborted", False), ("disable", "disabled", True)]
)
def test_svix_delivery_control(
    webhook_sender: Any, signed_delivery: Any, script: Script, control: str, outcome: str, disabled: bool
) -> None:
    script.append((500, {"webhook-delivery": control}))

    report = webhook_sender(schedule="svix").send(signed_delivery("a.b"))

    assert (report.outcome, report.disabled, len(report.attempts)) == (outcome, disabled, 1)


def test_standard_webhooks_410_disables(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule="standard-webhooks").send(signed_delivery("a.b"), faults=[410])

    assert report.disabled and report.outcome == "disabled" and len(report.attempts) == 1


@pytest.mark.parametrize("provider", ["stripe"])
def test_retries_keep_the_id_and_re_sign(
    provider: str, webhook_sender: Any, signed_delivery: Any, seen: list[dict[str, str]]
) -> None:
    delivery = signed_delivery("invoice.paid")

    report = webhook_sender(schedule="archived").send(delivery, faults=["timeout", "lost", "timeout", "lost"])

    assert report.statuses == [None, None, None, None, 200]
    stamps = [h["Stripe-Signature"].split(",")[0] for h in seen]
    assert len(set(stamps)) == 5  # 2 h later, only a fresh signature would verify
    assert report.attempts[-1].response is not None
    assert report.attempts[-1].response.json == {"status": "duplicate"}


def test_report_reads_well(webhook_sender: Any, signed_delivery: Any) -> None:
    report = webhook_sender(schedule=[0, 1]).send(signed_delivery("a.b"), faults=[500])

    assert str(report).splitlines()[:3] == [
        "custom: delivered",
        "  #1 +0s status=500 fault=500",
        "  #2 +1s status=200 fault=None",
    ]


def test_bad_arguments_are_explained(app: Flask, webhook_clock: FakeClock, signed_delivery: Any) -> None:
    from pytest_hooks.presets import resolve

    with pytest.raises(ValueError, match="unknown sender preset 'nope'; use one of archived, noukai"):
        resolve("nope", None)
    with pytest.raises(ValueError, match="non-empty list of finite delays"):
        resolve([], None)
    for schedule in ([0, float("nan")], [0, float("inf")], [-1]):
        with pytest.raises(ValueError, match="finite delays >= 0"):
            resolve(schedule, None)
    for timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            resolve("github", timeout)
    sender = Sender(app, webhook_clock, resolve("github", None))
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        sender.send(signed_delivery("a.b"), faults=["boom"])
    for one in ("timeout", 500):  # "timeout" was read as 7 faults: 't', 'i', ...
        with pytest.raises(TypeError, match=rf"faults is a list, one per attempt: faults=\[{one!r}\]"):
            sender.send(signed_delivery("a.b"), faults=one)


@pytest.mark.parametrize("provider", ["stripe", "slack"])
def test_retries_re_sign_the_first_attempts_bytes(
    provider: str, webhook_sender: Any, signed_delivery: Any, webhook_clock: FakeClock
) -> None:
    """A retry is the same message signed again: Stripe's ``created`` and Slack's
    ``event_time`` keep the event's time; only the signature header changes."""
    bodies: list[bytes] = []
    delivery = signed_delivery("invoice.paid")
    webhook_clock.advance(30)  # the first attempt is made after the event was created

    with signals.delivery_verified.connected_to(lambda _app, **kw: bodies.append(kw["event"].body)):
        report = webhook_sender(schedule=[0, 60, 300]).send(delivery, faults=[500, "lost"])

    assert report.delivered
    assert bodies == [delivery.body] * 2  # the 500 was forced without calling the app
    resigned = delivery.signed_at(int(webhook_clock.now()))
    assert resigned.body == delivery.body and resigned.headers != delivery.headers
