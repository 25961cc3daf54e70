"""A retry simulator: replay one sender's schedule on a fake clock.

``Sender.send(delivery, faults=[...])`` moves the receivers' clock to
each attempt, posts the same delivery (re-signed at the new time when
the scheme signs a timestamp, with the same id, as real senders do),
reads the answer the way that sender would, and returns a
:class:`Report`. Nothing sleeps.

=====================  ==================================================  =======
preset                 attempts (delays after the previous failure)        timeout
=====================  ==================================================  =======
``archived``           at 0, 60, 300, 1800, 7200 s after the first one     5 s
``noukai``             0, 1 min, 5 min, 30 min, 2 h (*approximation*)      20 s
``standard-webhooks``  0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,  15 s
                       24 h
``svix``               0, 5, 300, 1800, 7200, 18000, 36000, 36000 s        15 s
``stripe``             0, 1, 2, 4, 8, 16, 24, 17 h (*approximation*)       20 s
``shopify``            0, 2, 4, 8, 16, 32, 64, 114 min (*approximation*)   5 s
``slack``              0, 0, 1 min, 5 min                                  3 s
``github``             0 (no retries)                                      10 s
a list of delays       as given                                            10 s
=====================  ==================================================  =======

Rules beyond the schedule:

* ``archived`` (the archived "Working with Webhooks" guide): the endpoint is disabled after those 5 failures.
* ``noukai`` (Noukai's "Receiving Webhooks" guide): a 3xx is a permanent failure, never retried.
  The schedule is not published.
* ``standard-webhooks``: a 410 disables the endpoint; ``Retry-After`` is
  honoured as Svix's server does (the spec says it "should be taken into
  consideration").
* ``svix``: ``Retry-After`` is honoured, clamped to [scheduled, 2x]; a 429
  or a timeout waits at least 60 s; the response header
  ``webhook-delivery: abort-message`` stops, ``webhook-delivery: disable``
  disables the endpoint.
* ``stripe``: up to 3 days of exponential backoff; intervals and timeout
  are not published.
* ``shopify``: 8 tries over 4 h, intervals not published; then the
  subscription is deleted (reported as disabled).
* ``slack``: retries carry ``X-Slack-Retry-Num`` (1..3) and
  ``X-Slack-Retry-Reason``; a non-2xx with ``X-Slack-No-Retry: 1``
  stops; up to 2 redirects are followed (more: ``too_many_redirects``).

Any 3xx the sender does not follow is a failed attempt. A delay counts
from the moment the sender saw the failure: the response, or the end of
the timeout. Faults, one per attempt (``None`` = none): an ``int`` status
returned without calling the app; ``"timeout"`` (the app ran, the sender
gave up, as it also does when the handler advances the clock past the
timeout); ``"reset"`` (never reached the app); ``"lost"`` (the app ran,
the response was lost). A retry that falls due while a slow handler still
runs is made then, from inside its ``advance`` (see :class:`_Run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask_hooks.stores.leases import keeper

from .clock import FakeClock
from .delivery import merged
from .presets import Preset

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.test import TestResponse

    from .delivery import SignedDelivery

Fault = int | str | None
FAULTS = ("timeout", "reset", "lost")
SLACK_REASONS = {"timeout": "http_timeout", "reset": "connection_failed", "lost": "unknown_error"}


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One try: when (seconds after the first), what came back, which fault."""

    number: int
    offset: float
    status: int | None
    fault: str | int | None = None
    # Left out of the repr, which pytest prints when an assertion about an attempt fails.
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    response: TestResponse | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the sender saw a 2xx."""
        return self.status is not None and 200 <= self.status < 300


@dataclasses.dataclass
class Report:
    """What the sender did with one delivery.

    ``outcome`` is one of ``delivered``, ``exhausted``, ``permanent``
    (Noukai's 3xx), ``aborted`` (Svix ``abort-message``), ``disabled``
    (410 or Svix ``disable``) and ``no-retry`` (Slack ``X-Slack-No-Retry``).
    """

    preset: Preset
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    outcome: str = ""
    disabled: bool = False
    handler_calls: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def delivered(self) -> bool:
        """An attempt got a 2xx."""
        return self.outcome == "delivered"

    @property
    def exhausted(self) -> bool:
        """Every scheduled attempt was made and none succeeded."""
        return self.outcome == "exhausted"

    @property
    def offsets(self) -> list[float]:
        """Each attempt's ``offset``: seconds after the first attempt."""
        return [attempt.offset for attempt in self.attempts]

    @property
    def statuses(self) -> list[int | None]:
        """Each attempt's ``status`` (``None`` where no response arrived)."""
        return [attempt.status for attempt in self.attempts]

    def _head(self) -> str:
        return f"{self.preset.name}: {self.outcome}" + (" (endpoint disabled)" if self.disabled else "")

    def __str__(self) -> str:
        rows = [f"  #{a.number} +{a.offset:g}s status={a.status} fault={a.fault!r}" for a in self.attempts]
        return "\n".join([self._head(), *rows, f"  handler calls: {dict(self.handler_calls)}"])

    def __repr__(self) -> str:
        """One line: what ``assert report.delivered`` shows when it fails (pytest cuts
        a repr at 240 characters, which the preset's and responses' fields took up)."""
        tries = ", ".join(f"+{a.offset:g}s {a.status if a.fault is None else a.fault}" for a in self.attempts)
        calls = dict(self.handler_calls)
        return f"<Report {self._head()}; attempts {tries or 'none'}; handler calls {calls}>"


def _received(attempt: Attempt) -> TestResponse | None:
    """The response the sender read: none after a timeout or a lost answer (the app's is
    kept on the attempt for the test, but no header of it steers the sender)."""
    return attempt.response if attempt.fault is None else None


def _retry_after(response: TestResponse | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Sender:
    """Replays one preset against one app whose receivers read ``clock``."""

    def __init__(self, app: Flask, clock: FakeClock, preset: Preset) -> None:
        self.app = app
        self.clock = clock
        self.preset = preset

    def send(self, delivery: SignedDelivery, faults: Sequence[Fault] = ()) -> Report:
        """Deliver until success or the schedule ends; see the module table."""
        if isinstance(faults, (str, int)):  # a str is a sequence too: "timeout" was 7 faults
            raise TypeError(f"faults is a list, one per attempt: faults=[{faults!r}], not faults={faults!r}")
        for fault in faults:
            if not (fault is None or fault in FAULTS or (isinstance(fault, int) and 100 <= fault <= 599)):
                raise ValueError(f"unknown fault {fault!r}; use an HTTP status, None, or one of {FAULTS}")
        report = Report(self.preset)
        with self._counting(report.handler_calls):
            _Run(self, delivery, list(faults), report).run()
        return report

    @contextlib.contextmanager
    def _counting(self, calls: Counter[str]) -> Iterator[None]:
        from flask_hooks import signals

        def handled(_sender: Any, **kwargs: Any) -> None:
            calls.update(kwargs.get("handlers", ()))

        def failed(_sender: Any, **kwargs: Any) -> None:
            # Those before it in this attempt succeeded (and are recorded), then it raised.
            calls.update((*kwargs.get("handlers", ()), kwargs["handler"]))

        with (
            signals.event_handled.connected_to(handled, sender=self.app),
            signals.handler_failed.connected_to(failed, sender=self.app),
        ):
            yield

    def _decide(self, attempt: Attempt, report: Report) -> bool:
        """Whether the delivery is over after ``attempt`` (and how)."""
        preset, status = self.preset, attempt.status
        if attempt.ok:
            report.outcome = "delivered"
            return True
        answer = _received(attempt)
        control = answer.headers.get("webhook-delivery", "") if answer else ""
        if preset.delivery_control and control.lower() in ("abort-message", "disable"):
            report.outcome = "aborted" if control.lower() == "abort-message" else "disabled"
            report.disabled = control.lower() == "disable"
            return True
        if status is not None and 300 <= status < 400 and preset.redirect_is_permanent:
            report.outcome = "permanent"
            return True
        if status == 410 and preset.disable_on_410:
            report.outcome = "disabled"
            report.disabled = True
            return True
        no_retry = answer.headers.get("X-Slack-No-Retry") if answer else None
        if preset.slack_retries and no_retry == "1":
            report.outcome = "no-retry"
            return True
        return False

    def _next_floor(self, attempt: Attempt, index: int) -> float:
        """Svix: Retry-After within [scheduled, 2x]; 429s and timeouts wait longer."""
        preset = self.preset
        if index + 1 >= len(preset.schedule):
            return 0.0
        scheduled = preset.schedule[index + 1]
        floor = 0.0
        retry_after = _retry_after(_received(attempt)) if preset.honour_retry_after else None
        if retry_after is not None:
            floor = min(max(retry_after, scheduled), 2 * scheduled)
        if preset.overload_penalty and (attempt.status == 429 or attempt.fault == "timeout"):
            floor = max(floor, preset.overload_penalty)
        return floor

    def _post(self, delivery: SignedDelivery, headers: dict[str, str]) -> tuple[TestResponse, int, str]:
        """POST the bytes, following redirects as far as the preset does."""
        client = self.app.test_client()
        url = delivery.url
        response = client.post(url, data=delivery.body, headers=headers)
        for _ in range(self.preset.follow_redirects):
            if not 300 <= response.status_code < 400 or "Location" not in response.headers:
                break
            target = urlsplit(response.headers["Location"])
            url = target.path + (f"?{target.query}" if target.query else "")
            response = client.post(url, data=delivery.body, headers=headers)
        status = response.status_code
        if 300 <= status < 400 and self.preset.follow_redirects:
            return response, status, "too_many_redirects"
        return response, status, "http_error"


class _Run:
    """One delivery's attempts, each made when it falls due on the clock.

    An attempt falls due while an earlier one still runs when that one's
    handler moves the clock past the sender's timeout: the sender gave up
    on it and retries, as Slack does 3 s in, whatever the handler is doing.
    That retry is made from inside the handler's ``advance``, so it meets
    the claim still held, as a real one does (a 409), not the finished
    delivery. What goes wrong in it is raised from ``send()``, never into
    the handler.
    """

    def __init__(self, sender: Sender, delivery: SignedDelivery, faults: list[Fault], report: Report) -> None:
        self.sender, self.delivery, self.faults, self.report = sender, delivery, faults, report
        self.clock = sender.clock
        self.start = self.clock.now()
        #: The attempt to make next, (index, offset from the first), None once there is none.
        self.due: tuple[int, float] | None = (0, sender.preset.schedule[0])  # 0 but in a custom list
        self.over = False
        self.posting = 0  # attempts whose request is still in the app
        self.reason = ""  # Slack's retry reason, from the failure before
        self.error: BaseException | None = None  # raised by an attempt made inside a handler

    def run(self) -> None:
        try:
            while self.due is not None:
                due = self.due
                self.clock.advance_to(self.start + due[1])
                self.take(due)
        finally:
            self.clock._clear_alarms(self)
        if not self.over:
            self.report.outcome = "exhausted"
            self.report.disabled = self.sender.preset.disable_when_exhausted

    def take(self, due: tuple[int, float]) -> None:
        if self.due != due or self.over or self.error is not None:  # made already, or over
            return
        self.due = None
        if not self.posting:
            self.attempt(*due)
            return
        try:  # inside a running handler, whose lease is kept meanwhile, as the keeper would
            keeper.renew_all()
            self.attempt(*due)
        except BaseException as exc:  # the test's failure, not the handler's
            self.error = exc

    def attempt(self, index: int, planned: float) -> None:
        preset, number = self.sender.preset, index + 1
        began = self.clock.now()
        # Exact when made on time: the difference of two times near 1.7e9 is not (0.1 -> 0.0999999).
        offset = planned if began == self.start + planned else began - self.start
        fault = self.faults[index] if index < len(self.faults) else None
        delivery = self.delivery.signed_at(int(began)) if self.delivery.timestamped else self.delivery
        headers = dict(delivery.headers)
        if preset.slack_retries and number > 1:
            retry = {"X-Slack-Retry-Num": str(number - 1), "X-Slack-Retry-Reason": self.reason}
            headers = merged(headers, retry)
        if isinstance(fault, int) or fault == "reset":
            status = fault if isinstance(fault, int) else None
            failure = "http_error" if isinstance(fault, int) else SLACK_REASONS["reset"]
            self.settle(index, Attempt(number, offset, status, fault, headers), failure, 0.0)
            return
        gave_up: list[int] = []  # where the attempt went in the report, once the sender gave up

        def give_up() -> None:
            if not answered:
                gave_up.append(len(self.report.attempts))
                timeout = Attempt(number, offset, None, "timeout", headers)
                self.settle(index, timeout, SLACK_REASONS["timeout"], preset.timeout)

        answered = False
        self.clock._call_after(began + preset.timeout, give_up, self)
        self.posting += 1
        try:
            response, status, failure = self.sender._post(delivery, headers)
        finally:
            self.posting -= 1
            answered = True
        if self.error is not None:
            raise self.error
        if gave_up:  # the app's answer came after the sender stopped waiting: kept for the test
            at = gave_up[0]
            self.report.attempts[at] = dataclasses.replace(self.report.attempts[at], response=response)
            return
        waited = self.clock.now() - began
        lost = fault if fault in ("timeout", "lost") else None  # the app ran; no answer was read
        if fault == "timeout" or waited > preset.timeout:
            lost, waited = "timeout", preset.timeout
            if not self.posting:  # the sender waits it out; inside a handler, its clock is its own
                self.clock.advance_to(began + preset.timeout)
        reason = SLACK_REASONS[lost] if lost else failure
        self.settle(
            index, Attempt(number, offset, None if lost else status, lost, headers, response), reason, waited
        )

    def settle(self, index: int, attempt: Attempt, reason: str, waited: float) -> None:
        """Record ``attempt`` and plan the next one. A delay counts from when the sender
        saw the failure: ``waited`` seconds after the attempt began (the response, or
        the end of the timeout)."""
        sender, preset = self.sender, self.sender.preset
        self.report.attempts.append(attempt)
        self.reason = reason
        if sender._decide(attempt, self.report):
            self.over = True
            return
        if index + 1 >= len(preset.schedule):
            return
        scheduled = preset.schedule[index + 1]
        if preset.from_start:
            planned = scheduled
        else:
            planned = attempt.offset + waited + max(scheduled, sender._next_floor(attempt, index))
        due = self.due = (index + 1, planned)
        if self.posting:  # a handler still runs: the sender does not wait for it
            self.clock._call_after(self.start + planned, lambda: self.take(due), self)
