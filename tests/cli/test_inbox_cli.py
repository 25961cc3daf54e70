"""``flask hooks show|replay|forget|purge`` through ``app.test_cli_runner()``.

A shop with a booking handler that works and an invoicing handler with a
bug; the tests see a failure, fix the bug and replay, on a memory store
that can be switched off to play an outage.
"""

from __future__ import annotations

import builtins
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks, StoreUnavailable
from flask_hooks.cli import format_duration, parse_duration
from flask_hooks.core.attempts import exception_line
from flask_hooks.core.inbox import Kept, Stored, mask_excerpt
from flask_hooks.core.providers.base import Outgoing
from flask_hooks.core.providers.narada import NaradaKey
from flask_hooks.core.store import Claim, LogEntry
from flask_hooks.providers import Narada
from flask_hooks.stores import MemoryStore
from tests.conftest import SECRET, generic_post
from tests.helpers import ManualClock

MakeApp = Callable[..., Flask]


class FlakyStore(MemoryStore):
    """A memory store whose inbox and log raise :class:`StoreUnavailable` while ``down``."""

    down = False
    #: Reopens (replays) that still succeed before the store goes down; None: no limit.
    reopens_left: int | None = None

    def check(self) -> None:
        if self.down:
            raise StoreUnavailable("connection refused")

    def get(self, *args: Any, **kwargs: Any) -> Stored | None:
        self.check()
        return super().get(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> list[Stored]:
        self.check()
        return super().query(*args, **kwargs)

    def deliveries(self, *args: Any, **kwargs: Any) -> list[LogEntry]:
        self.check()
        return super().deliveries(*args, **kwargs)

    def reopen(self, *args: Any, **kwargs: Any) -> Claim:
        if self.reopens_left is not None:
            self.down, self.reopens_left = self.reopens_left <= 0, self.reopens_left - 1
        self.check()
        return super().reopen(*args, **kwargs)

    def forget(self, *args: Any, **kwargs: Any) -> bool:
        self.check()
        return super().forget(*args, **kwargs)

    def purge(self, *args: Any, **kwargs: Any) -> int:
        self.check()
        return super().purge(*args, **kwargs)


class Shop:
    """An app whose ``billing.invoice`` handler fails until ``fixed``."""

    def __init__(self, make_app: MakeApp) -> None:
        self.store, self.clock = FlakyStore(), ManualClock()
        self.hooks = Hooks(store=self.store, clock=self.clock)
        self.fixed = False
        #: What the invoicing bug raises.
        self.bug: Callable[[], Exception] = lambda: KeyError("customer")
        self.booked: list[str] = []
        self.invoiced: list[tuple[str, bool]] = []
        self.hooks.on("payment", name="ledger.book")(lambda event: self.booked.append(event.id))
        self.hooks.on("payment.succeeded", name="billing.invoice")(self.invoice)
        self.hooks.on("refund", name="ledger.refund")(lambda event: None)
        self.app = make_app(self.hooks)

    def invoice(self, event: Event) -> None:
        if not self.fixed:
            raise self.bug()
        self.invoiced.append((event.id, event.replayed))

    def post(self, id: str, type: str = "payment.succeeded", **headers: str) -> int:
        payload = {"id": id, "type": type, "customer": "cus_1"}
        status: int = generic_post(self.app.test_client(), payload, **headers).status_code
        return status

    def status(self, id: str) -> str | None:
        delivery = self.hooks.inbox(self.app).get(id)
        return None if delivery is None else delivery.status


@pytest.fixture
def shop(make_app: MakeApp) -> Shop:
    return Shop(make_app)


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["hooks", *args])


# show ------------------------------------------------------------------------------


def test_show_gives_headers_body_handlers_attempts_and_the_traceback(shop: Shop) -> None:
    assert (
        shop.post("evt_1", Authorization="Bearer tok_live", **{"Proxy-Authorization": "Basic cHJveHk="})
        == 500
    )
    result = run(shop.app, "show", "evt_1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "evt_1  payment.succeeded  failed"
    assert "  Authorization: [redacted]" in out and "  Proxy-Authorization: [redacted]" in out
    assert "tok_live" not in out and "cHJveHk=" not in out
    assert '  {\n    "id": "evt_1",\n    "type": "payment.succeeded",\n    "customer": "cus_1"\n  }' in out
    assert "  ledger.book      succeeded\n  billing.invoice  failed\n" in out
    assert (
        "  1  2023-11-14 22:13:20  error  500  " in out and "ran: ledger.book  failed: billing.invoice" in out
    )
    assert "last error (attempt 1, billing.invoice):\n  Traceback (most recent call last):" in out
    assert out.rstrip().endswith("KeyError: 'customer'")


def test_show_gives_each_attempts_own_error(shop: Shop) -> None:
    assert shop.post("evt_1") == 500
    shop.bug = lambda: TypeError("amount is a str")  # a fix that left another bug
    assert shop.post("evt_1") == 500
    out = run(shop.app, "show", "evt_1").stdout
    attempts = out.split("attempts:\n", 1)[1].split("last error", 1)[0].splitlines()
    assert [line.strip() for line in attempts[1::2]] == ["KeyError: 'customer'", "TypeError: amount is a str"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="add_note is 3.11's")
def test_show_names_the_exception_not_its_last_line(shop: Shop) -> None:
    def noted() -> Exception:
        error = ValueError("1 validation error for Payment\namount\n  Field required")
        error.add_note("while booking the invoice")
        return error

    shop.bug = noted
    assert shop.post("evt_1") == 500
    shop.bug = lambda: RuntimeError("retry later")  # a reason of its own, after a traceback
    assert shop.post("evt_1") == 500
    out = run(shop.app, "show", "evt_1").stdout
    attempts = out.split("attempts:\n", 1)[1].split("last error", 1)[0].splitlines()
    assert [line.strip() for line in attempts[1::2]] == [
        "ValueError: 1 validation error for Payment",
        "RuntimeError: retry later",
    ]
    assert exception_line("come back later") == "come back later"  # a Retry's reason


def formatted(raise_it: Callable[[], None]) -> str:
    try:
        raise_it()
    except BaseException as exc:  # formatted as the receiver keeps it
        return "".join(traceback.format_exception(exc))
    raise AssertionError("nothing raised")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups and notes are 3.11's")
def test_the_exception_line_is_the_one_raised_last() -> None:
    ExceptionGroup = builtins.ExceptionGroup  # 3.11's, and ruff targets 3.10

    def chained() -> None:
        try:
            {}["customer"]
        except KeyError as exc:
            raise TypeError("amount is a str") from exc

    def handling() -> None:
        try:
            {}["customer"]
        except KeyError:
            raise ExceptionGroup("two failed", [ValueError("bad amount"), OSError("smtp")]) from None

    def in_handling() -> None:
        try:
            {}["customer"]
        except KeyError:
            raise ExceptionGroup("two failed", [ValueError("bad amount")])  # noqa: B904

    assert exception_line(formatted(chained)) == "TypeError: amount is a str"
    assert exception_line(formatted(handling)) == "ExceptionGroup: two failed (2 sub-exceptions)"
    # Shown before: the KeyError being handled, whose frame is the last unprefixed one.
    assert exception_line(formatted(in_handling)) == "ExceptionGroup: two failed (1 sub-exception)"


def test_show_as_json(shop: Shop) -> None:
    shop.post("evt_1")
    result = run(shop.app, "show", "evt_1", "--json")
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    doc = json.loads(line)
    assert (doc["receiver"], doc["id"], doc["status"], doc["body"]) == ("hooks", "evt_1", "failed", None)
    assert doc["payload"] == {"id": "evt_1", "type": "payment.succeeded", "customer": "cus_1"}
    assert doc["handlers"] == {"ledger.book": "succeeded", "billing.invoice": "failed"}
    [attempt] = doc["attempts"]
    assert (attempt["outcome"], attempt["failed"]) == ("error", "billing.invoice")
    assert "KeyError: 'customer'" in attempt["error"]
    assert ["Content-Type", "application/json"] in doc["headers"]


def test_show_escapes_a_body_that_is_not_json(shop: Shop) -> None:
    receiver = shop.hooks.receiver(shop.app)
    body = b"a=1&b=\x1b[31mred\xff"
    kept = Kept("form.posted", body, (("X-Evil", "\x1b]0;owned\x07"),), shop.clock(), 0, 86400)
    claim = shop.store.claim(receiver.ns, "frm_1", now=shop.clock(), lease=60, ttl=60, keep=kept)
    shop.store.complete(
        receiver.ns, "frm_1", claim.token, outcome="ignored", reply=None, now=shop.clock(), ttl=60
    )
    result = run(shop.app, "show", "frm_1")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "  a=1&b=\\x1b[31mred\\xff" in result.stdout
    assert "X-Evil: \\x1b]0;owned\\x07" in result.stdout
    assert "(none matches this type)" in result.stdout
    doc = json.loads(run(shop.app, "show", "frm_1", "--json").stdout)
    assert (doc["payload"], doc["body"]) == (None, "a=1&b=\x1b[31mred\\xff")


def test_show_blanks_the_receivers_secret_wherever_the_delivery_quotes_it(shop: Shop) -> None:
    """A sender echoing its configuration: the secret in the body under a name no provider
    declares, and in a header; also in a body that is not JSON."""
    payload = {"id": "evt_echo", "type": "refund", "config": {"webhook_secret": SECRET}}
    assert generic_post(shop.app.test_client(), payload, **{"X-Echo": SECRET}).status_code == 200
    text = b"secret=" + SECRET.encode()
    receiver = shop.hooks.receiver(shop.app)
    kept = Kept("form.posted", text, (), shop.clock(), 0, 86400)
    claim = shop.store.claim(receiver.ns, "frm_2", now=shop.clock(), lease=60, ttl=60, keep=kept)
    shop.store.complete(
        receiver.ns, "frm_2", claim.token, outcome="ignored", reply=None, now=shop.clock(), ttl=60
    )
    for args in (("evt_echo",), ("evt_echo", "--json"), ("frm_2",), ("frm_2", "--json")):
        result = run(shop.app, "show", *args)
        assert result.exit_code == 0, result.stderr
        assert SECRET not in result.stdout and "[redacted]" in result.stdout, args


def test_show_an_unknown_id_and_the_choice_of_receiver(shop: Shop) -> None:
    unknown = run(shop.app, "show", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: no delivery 'nope' is kept by any receiver (hooks)\n"
    assert unknown.stdout == ""
    other = Hooks(name="billing", secret="billing-secret", store="memory://")
    other.init_app(shop.app)
    generic_post(
        shop.app.test_client(), {"id": "in_1", "type": "x"}, secret="billing-secret", url="/webhooks/billing"
    )
    shop.post("evt_1")
    assert run(shop.app, "show", "in_1").stdout.startswith("in_1  x  ignored")  # found in billing
    assert run(shop.app, "show", "evt_1", "--receiver", "billing").exit_code == 1
    generic_post(
        shop.app.test_client(), {"id": "evt_1", "type": "x"}, secret="billing-secret", url="/webhooks/billing"
    )
    both = run(shop.app, "show", "evt_1")
    assert both.exit_code == 2
    assert "receivers hooks, billing all keep a delivery 'evt_1'; choose one with --receiver" in both.stderr


# replay ----------------------------------------------------------------------------


def test_replay_after_the_fix_runs_only_the_failed_handler(shop: Shop) -> None:
    shop.post("evt_1")
    still_broken = run(shop.app, "replay", "evt_1")
    assert still_broken.exit_code == 1
    assert still_broken.stdout == "replayed 1: 1 failed\n"
    assert "evt_1: failed (billing.invoice: KeyError: 'customer')" in still_broken.stderr
    assert "replaying" not in still_broken.stderr  # one replay: no progress bar

    shop.fixed = True
    result = run(shop.app, "replay", "evt_1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "replayed 1: 1 received\n"
    assert shop.booked == ["evt_1"]  # the booking succeeded the first time: not run again
    assert shop.invoiced == [("evt_1", True)]
    assert shop.status("evt_1") == "received"


def test_replay_of_unknown_and_in_flight_ids_exits_1(shop: Shop) -> None:
    shop.post("evt_1")
    shop.post("evt_2")
    shop.fixed = True
    receiver = shop.hooks.receiver(shop.app)
    shop.store.reopen(receiver.ns, "evt_2", now=shop.clock(), lease=60)  # a retry holds it
    result = run(shop.app, "replay", "evt_1", "nope", "evt_2")
    assert result.exit_code == 1
    assert result.stdout == "replayed 1: 1 received; not replayed: 1 unknown, 1 in flight\n"
    assert "nope: no delivery 'nope' is kept by any receiver (hooks)" in result.stderr
    assert "evt_2: in flight" in result.stderr
    assert shop.invoiced == [("evt_1", True)]
    assert shop.booked == ["evt_1", "evt_2"]


def test_bulk_replay_by_status_type_and_age_with_a_progress_bar(shop: Shop) -> None:
    shop.post("evt_old")
    shop.clock.advance(3 * 3600)
    shop.post("evt_1")
    shop.post("evt_2")
    shop.hooks.on("refund", name="refunds.fail")(lambda event: 1 / 0)
    shop.post("ref_1", type="refund.created")
    shop.fixed = True
    result = run(shop.app, "replay", "--status", "failed", "--type", "payment.*", "--since", "2h")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "replayed 2: 2 received\n"
    assert result.stderr.startswith("replaying 2 deliveries")
    assert shop.invoiced == [("evt_1", True), ("evt_2", True)]  # oldest first
    assert (shop.status("evt_old"), shop.status("ref_1")) == ("failed", "failed")

    rest = run(shop.app, "replay", "--status", "failed")
    assert rest.exit_code == 1
    assert rest.stdout == "replayed 2: 1 received, 1 failed\n"
    assert "ref_1: failed (refunds.fail: ZeroDivisionError: division by zero)" in rest.stderr
    assert (
        run(shop.app, "replay", "--status", "failed", "--type", "payment.*").stdout == "nothing to replay\n"
    )


def test_a_bulk_replay_counts_what_it_ran_not_what_it_chose(shop: Shop) -> None:
    from flask_hooks.replay_cli import Tally, replay_one

    shop.hooks.on("refund", name="refunds.fail")(lambda event: 1 / 0)
    shop.post("ref_1", type="refund.created")
    shop.post("evt_1")
    chosen = shop.hooks.inbox(shop.app).get("evt_1")
    assert chosen is not None and chosen.status == "failed"
    shop.fixed = True
    assert shop.post("evt_1") == 200  # the sender's retry completes it after the bulk replay chose it
    tally = Tally()
    with shop.app.app_context():
        replay_one(shop.app.extensions["hooks"].receivers["hooks"], chosen, (), tally)
    assert tally.summary() == "replayed 0; nothing to run for 1 already received"  # "1 received"

    rest = run(shop.app, "replay", "ref_1", "evt_1")
    assert rest.stdout == "replayed 1: 1 failed; nothing to run for 1 already received\n"


def test_a_summary_counts_received_first(shop: Shop) -> None:
    shop.hooks.on("refund", name="refunds.fail")(lambda event: 1 / 0)
    shop.post("ref_1", type="refund.created")
    shop.post("evt_1")
    shop.fixed = True
    result = run(shop.app, "replay", "ref_1", "evt_1")  # the failure comes first
    assert result.stdout == "replayed 2: 1 received, 1 failed\n"


def test_dry_run_lists_and_changes_nothing(shop: Shop) -> None:
    shop.post("evt_1")
    shop.post("ref_1", type="refund.created")
    result = run(shop.app, "replay", "--status", "failed", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "hooks  evt_1  payment.succeeded  failed  would run: billing.invoice",
        "dry run: would replay 1; nothing was changed",
    ]
    again = run(shop.app, "replay", "--status", "received", "--handler", "ledger.refund", "--dry-run")
    assert again.stdout.splitlines()[0] == "hooks  ref_1  refund.created  received  would run: ledger.refund"
    assert shop.status("evt_1") == "failed"
    assert [a.outcome for a in shop.hooks.inbox(shop.app).get("evt_1").attempts] == ["error"]  # type: ignore[union-attr]


def test_replay_named_handlers_even_if_they_succeeded(shop: Shop) -> None:
    shop.fixed = True
    shop.post("evt_1")
    result = run(shop.app, "replay", "evt_1", "--handler", "ledger.book")
    assert result.exit_code == 0, result.stderr
    assert shop.booked == ["evt_1", "evt_1"]
    assert shop.invoiced == [("evt_1", False)]


def test_replay_refuses_bad_input_before_running_anything(shop: Shop) -> None:
    shop.post("evt_1")
    shop.post("ref_1", type="refund.created")
    cases = {
        ("evt_1", "--handler", "nope"): "'nope' does not handle 'evt_1' (type 'payment.succeeded';",
        ("--status", "failed", "--handler", "ledger.refund"): "'ledger.refund' does not handle 'evt_1'",
        ("evt_1", "--status", "failed"): "give delivery ids or select with --status, not both",
        (): "give delivery ids, or select with --status failed",
        ("--status", "in-flight"): "'in-flight' is not one of 'failed', 'received', 'ignored'",
        ("--status", "failed", "--since", "2 days"): "'2 days' is not a duration: use a number and a unit",
        # An unset shell variable (--type "$TYPE") selected nothing and exited 0, as if replayed.
        ("--status", "failed", "--type", ""): "give a type or a pattern, like payment.* or *",
        ("--status", "failed", "--type", " "): "give a type or a pattern, like payment.* or *",
        # Patterns no handler may use matched nothing: "nothing to replay", exit 0.
        ("--status", "failed", "--type", "pay*"): "'pay*' matches no type: '*' may only be a whole last part",
        ("--status", "failed", "--since", "\u0663h"): "is not a duration",  # an Arabic-Indic 3
    }
    for args, message in cases.items():
        result = run(shop.app, "replay", *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)
    # An exact type is looked up as kept, however odd: only a '*' makes it a pattern.
    assert run(shop.app, "deliveries", "--type", "payment.").exit_code == 0
    assert shop.booked == ["evt_1"]
    assert len(shop.hooks.inbox(shop.app).get("evt_1").attempts) == 1  # type: ignore[union-attr]


# forget and purge --------------------------------------------------------------------


def test_forget_lets_the_next_redelivery_run_afresh(shop: Shop) -> None:
    shop.fixed = True
    shop.post("evt_1")
    result = run(shop.app, "forget", "evt_1")
    assert result.exit_code == 0
    assert result.stdout == "forgot evt_1 (hooks): the next redelivery runs its handlers\n"
    assert shop.status("evt_1") is None
    assert shop.post("evt_1") == 200
    assert shop.booked == ["evt_1", "evt_1"]
    gone = run(shop.app, "forget", "nope")
    assert gone.exit_code == 1
    assert gone.stderr == "Error: no delivery 'nope' is kept by receiver 'hooks'\n"


def test_purge_removes_what_is_older(shop: Shop) -> None:
    shop.post("evt_old")
    shop.clock.advance(3 * 86400)
    shop.post("evt_new")
    result = run(shop.app, "purge", "--older-than", "2d")
    assert result.exit_code == 0
    assert result.stdout == "hooks: purged 1 delivery received more than 2d ago\n"
    assert result.stderr == ""
    assert (shop.status("evt_old"), shop.status("evt_new")) == (None, "failed")
    shop.clock.advance(1)
    young = run(shop.app, "purge", "--older-than", "0s")
    assert young.stdout == "hooks: purged 1 delivery received more than 0s ago\n"
    assert "less than the dedupe TTL (1d) of 'hooks': a redelivery" in young.stderr
    for bad in ("3", "7x", "-1d", "1h30m", ""):
        refused = run(shop.app, "purge", "--older-than", bad)
        assert refused.exit_code == 2, bad
        assert "is not a duration: use a number and a unit, like 90s, 15m, 2h or 7d" in refused.stderr
    assert "Missing option '--older-than'" in run(shop.app, "purge").stderr


# the store is down ---------------------------------------------------------------------


def test_every_command_reports_a_store_that_is_down_and_changes_nothing(shop: Shop) -> None:
    shop.post("evt_1")
    shop.fixed = True
    shop.store.down = True
    for args in (
        ("deliveries",),
        ("deliveries", "--id", "evt_1"),
        ("show", "evt_1"),
        ("replay", "evt_1"),
        ("replay", "--status", "failed"),
        ("forget", "evt_1"),
        ("purge", "--older-than", "0s"),
    ):
        result = run(shop.app, *args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("Error: store unavailable for receiver 'hooks' (connection refused)")
        assert "Traceback" not in result.output + result.stderr
        # Only the commands that would change something say that nothing was.
        assert ("nothing was" in result.stderr) == (args[0] in ("replay", "forget")), args
    shop.store.down = False
    assert shop.status("evt_1") == "failed" and shop.invoiced == []


def test_a_store_that_cannot_be_reached_is_reported_with_the_drivers_error(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    app = Flask("down", instance_path=str(tmp_path))
    Hooks(secret="s3cret", store="redis://127.0.0.1:1/0").init_app(app)  # nothing listens on port 1
    result = run(app, "deliveries")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: store unavailable for receiver 'hooks' (ConnectionError: ")
    assert "127.0.0.1:1" in result.stderr and "cannot read the delivery log" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_store_lost_during_a_bulk_replay_stops_it(shop: Shop) -> None:
    for id in ("evt_1", "evt_2", "evt_3"):
        shop.post(id)
        shop.clock.advance(1)
    shop.fixed = True
    shop.store.reopens_left = 1  # the second replay cannot reopen its delivery
    result = run(shop.app, "replay", "--status", "failed")
    assert result.exit_code == 1
    assert result.stdout == "replayed 1: 1 received\n"
    assert (
        "store unavailable for receiver 'hooks' (connection refused): stopped after 1 of 3" in result.stderr
    )
    # The one it was at is named: its handlers may have run, and it may stay in flight a lease.
    assert "evt_2: interrupted while it was replayed; its handlers may have run" in result.stderr
    shop.store.down, shop.store.reopens_left = False, None
    assert [shop.status(id) for id in ("evt_1", "evt_2", "evt_3")] == ["received", "failed", "failed"]


def test_an_interrupted_bulk_replay_says_how_far_it_got(shop: Shop) -> None:
    for id in ("evt_1", "evt_2"):
        shop.post(id)
        shop.clock.advance(1)
    shop.bug = KeyboardInterrupt  # Ctrl-C while the handler runs
    result = run(shop.app, "replay", "--status", "failed")
    assert result.exit_code == 130  # it printed "Aborted!" alone, with no summary
    assert result.stdout == "replayed 0\n"
    assert "evt_1: interrupted while it was replayed" in result.stderr
    assert "interrupted: stopped after 0 of 2; the rest were not replayed" in result.stderr


# credentials are never printed -------------------------------------------------------

TOKEN, BODY_SECRET = "tok-narada-9f2c", "cb-secret-77ab"


def narada_app(make_app: MakeApp) -> tuple[Flask, Hooks]:
    hooks = Hooks(name="narada", provider=Narada(token=TOKEN, secret=BODY_SECRET), store="memory://")

    @hooks.on("completed")
    def fails(event: Event) -> None:
        raise RuntimeError("downstream said no")

    return make_app(hooks), hooks


def narada_post(app: Flask, hooks: Hooks, request_id: str, *, token: str = TOKEN) -> int:
    receiver = hooks.receiver(app)
    key = NaradaKey(token=token, secret=BODY_SECRET)
    signed = receiver.provider.sign(Outgoing("completed", {"requestId": request_id}, request_id, 0), key)
    response = app.test_client().post(receiver.settings.url, data=signed.body, headers=signed.headers)
    status: int = response.status_code
    return status


def test_a_narada_token_and_body_secret_appear_in_no_output(make_app: MakeApp) -> None:
    app, hooks = narada_app(make_app)
    assert narada_post(app, hooks, "req_1") == 500
    assert narada_post(app, hooks, "req_2", token="wrong-token") == 401  # refused: only an excerpt is kept
    outputs = []
    for args in (
        ("deliveries",),
        ("deliveries", "--json"),
        ("show", "req_1:completed"),
        ("show", "req_1:completed", "--json"),
        ("replay", "req_1:completed", "--dry-run"),
        ("replay", "req_1:completed"),
        ("replay", "--status", "failed", "--handler", "nope"),
        ("show", "req_1:completed"),
        ("forget", "req_1:completed"),
    ):
        result = run(app, *args)
        outputs.append(result.output + result.stderr)
    everything = "\n".join(outputs)
    assert "req_1:completed" in everything and "downstream said no" in everything
    assert '"secret": "[redacted]"' in everything
    assert TOKEN not in everything
    assert BODY_SECRET not in everything


def test_a_field_declared_after_the_delivery_was_kept_is_blanked_in_the_log_too(make_app: MakeApp) -> None:
    # ``show`` masked it; ``deliveries`` printed the stored error, which quoted it, as kept.
    from flask_hooks.providers import Generic

    class Declaring(Generic):
        redacted_fields = ("token",)

    def failing(hooks: Hooks) -> Hooks:
        @hooks.on("*")
        def fails(event: Event) -> None:
            raise RuntimeError(f"refused {event.payload['token']}")

        return hooks

    before = failing(Hooks(store=f"sqlite:///{make_app().instance_path}/h.db"))
    app = make_app(before)
    body = {"id": "evt_1", "type": "a", "token": "tok-SECRET-0"}
    assert generic_post(app.test_client(), body).status_code == 500
    assert "tok-SECRET-0" in run(app, "deliveries").stdout  # as kept: nothing declared it yet
    after = make_app(failing(Hooks(store=f"sqlite:///{app.instance_path}/h.db", provider=Declaring())))
    views = (("deliveries",), ("deliveries", "--json"), ("deliveries", "--id", "evt_1"), ("show", "evt_1"))
    for args in views:
        result = run(after, *args)
        assert result.exit_code == 0 and "refused" in result.stdout, args
        assert "tok-SECRET-0" not in result.stdout + result.stderr, args


def test_the_token_header_is_redacted_whatever_the_body(make_app: MakeApp) -> None:
    app, hooks = narada_app(make_app)
    narada_post(app, hooks, "req_1")
    shown = run(app, "show", "req_1:completed").stdout + run(app, "show", "req_1:completed", "--json").stdout
    assert "Authorization: [redacted]" in shown and '["Authorization", "[redacted]"]' in shown
    assert TOKEN not in shown


def test_mask_excerpt_masks_declared_fields_even_when_cut() -> None:
    fields = ("secret",)
    assert (
        mask_excerpt('{"a": 1, "secret": "s3\\\\"x", "b": 2}', fields)
        == '{"a": 1, "secret": "[redacted]", "b": 2}'
    )
    assert (
        mask_excerpt('{"requestId": "r", "secret":"abcdef...', fields)
        == '{"requestId": "r", "secret":"[redacted]"'
    )
    assert mask_excerpt('{"secret": "x"}', ()) == '{"secret": "x"}'


# durations ------------------------------------------------------------------------------


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90s", "15m", "2h", "7d", "1.5h", " 3D ")] == [
        90,
        900,
        7200,
        604800,
        5400,
        259200,
    ]
    for bad in ("7", "7x", "", "-1d", "1h30m", "d", "1e3s"):
        with pytest.raises(ValueError, match="is not a duration: use a number and a unit, like 90s"):
            parse_duration(bad)
    assert [format_duration(s) for s in (604800, 5400, 90, 45, 0, 1.5)] == [
        "7d",
        "90m",
        "90s",
        "45s",
        "0s",
        "1.5s",
    ]


# the walk-through: a handler bug, the fix, the replay -----------------------------------


def test_a_handler_bug_the_fix_the_replay(make_app: MakeApp, serve: Callable[[Flask], str]) -> None:
    shop = Shop(make_app)
    base = serve(shop.app)
    data = '{"customer": "cus_1"}'
    # 1. The sender delivers; the invoicing handler has a bug: 500, and the sender will retry.
    sent = run(shop.app, "send", "payment.succeeded", "--url", base, "--id", "evt_42", "--data", data)
    assert sent.exit_code == 1
    assert sent.stdout.splitlines()[-1] == '500  {"status": "error", "reason": "handler failed"}'
    # 2. The operator finds it, and which handler failed with what.
    log = run(shop.app, "deliveries", "--status", "error", "--type", "payment.*", "--since", "1h")
    [row] = log.stdout.splitlines()[1:]
    assert row.split()[3:6] == ["evt_42", "payment.succeeded", "error"]
    assert row.endswith("ledger.book  billing.invoice: KeyError: 'customer'")
    shown = run(shop.app, "show", "evt_42")
    assert "billing.invoice  failed" in shown.stdout and "KeyError: 'customer'" in shown.stdout
    # 3. The fix is deployed; a dry run, then the replay runs only what failed.
    shop.fixed = True
    dry = run(shop.app, "replay", "--status", "failed", "--dry-run")
    assert "evt_42  payment.succeeded  failed  would run: billing.invoice" in dry.stdout
    assert shop.invoiced == []
    replayed = run(shop.app, "replay", "--status", "failed")
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.stdout == "replayed 1: 1 received\n"
    assert shop.booked == ["evt_42"] and shop.invoiced == [("evt_42", True)]
    # 4. The sender's own retry arrives later: a duplicate, nothing runs twice.
    retry = run(shop.app, "send", "payment.succeeded", "--url", base, "--id", "evt_42", "--data", data)
    assert retry.exit_code == 0
    assert retry.stdout.splitlines()[-2:] == [
        '200  {"status": "duplicate"}',
        "(a duplicate: the receiver had already processed this id; nothing ran again)",
    ]
    assert shop.booked == ["evt_42"] and shop.invoiced == [("evt_42", True)]
    attempts = json.loads(run(shop.app, "show", "evt_42", "--json").stdout)["attempts"]
    assert [a["outcome"] for a in attempts] == ["error", "replayed", "duplicate"]
