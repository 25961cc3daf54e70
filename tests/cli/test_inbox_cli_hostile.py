"""``flask hooks show|replay|forget|purge`` given what an operator's shell can pass.

Bytes that are not UTF-8, bodies whose numbers overflow a float, durations
of 400 digits, a replay with nothing to run: a clean message and an exit
code, never a traceback, and ``--json`` that any strict parser reads.
The app keeps deliveries in SQLite, which (unlike memory://) encodes
every id and pattern it is asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.providers import Generic, HeaderMap, Parsed
from tests.conftest import generic_post

MakeApp = Callable[..., Flask]

#: ``$'\xff'`` as click passes it: the byte that is not UTF-8 as a lone surrogate.
NOT_UTF8 = b"\xff".decode("utf-8", "surrogateescape")
NINES = "9" * 400


class Shop:
    """A SQLite-backed app whose ``billing.invoice`` handler fails until ``fixed``."""

    def __init__(self, make_app: MakeApp) -> None:
        self.hooks = Hooks()
        self.fixed = False
        self.booked: list[str] = []
        self.hooks.on("payment", name="ledger.book")(lambda event: self.booked.append(event.id))
        self.hooks.on("payment.succeeded", name="billing.invoice")(self.invoice)
        self.app = make_app(self.hooks, HOOKS_STORE="sqlite:///hostile.sqlite3")

    def invoice(self, event: Event) -> None:
        if not self.fixed:
            raise KeyError("customer")

    def post(self, id: str, type: str = "payment.succeeded") -> int:
        status: int = generic_post(self.app.test_client(), {"id": id, "type": type}).status_code
        return status

    def attempts(self, id: str) -> int:
        delivery = self.hooks.inbox(self.app).get(id)
        assert delivery is not None
        return len(delivery.attempts)


@pytest.fixture
def shop(make_app: MakeApp) -> Shop:
    return Shop(make_app)


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["hooks", *args])


def clean(result: Any, code: int) -> str:
    """The one-line error of a command that failed as it should, without a traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stdout + result.stderr
    last: str = result.stderr.splitlines()[-1]
    return last


def strict(text: str) -> Any:
    """``text`` parsed as RFC 8259 JSON: NaN and Infinity are refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# text that is not UTF-8 ----------------------------------------------------------------


def test_ids_that_are_not_utf8_are_simply_not_kept(shop: Shop, make_app: MakeApp) -> None:
    shop.fixed = True
    shop.post("evt_1")
    unknown = f"no delivery {NOT_UTF8!r} is kept by"
    assert clean(run(shop.app, "show", NOT_UTF8), 1).startswith(f"Error: {unknown} any receiver")
    assert clean(run(shop.app, "show", NOT_UTF8, "--json"), 1).startswith(f"Error: {unknown}")
    replayed = run(shop.app, "replay", NOT_UTF8)
    assert clean(replayed, 1) == f"\\udcff: {unknown} any receiver (hooks)"
    assert replayed.stdout == "replayed 0; not replayed: 1 unknown\n"
    assert clean(run(shop.app, "forget", NOT_UTF8), 1) == f"Error: {unknown} receiver 'hooks'"
    two = make_app(Hooks(), Hooks(name="billing", secret="s"), HOOKS_STORE="sqlite:///hostile.sqlite3")
    assert clean(run(two, "forget", NOT_UTF8), 1).startswith(f"Error: {unknown} any receiver")  # looked up
    assert shop.attempts("evt_1") == 1


def test_patterns_that_are_not_utf8_are_usage_errors(shop: Shop) -> None:
    shop.post("evt_1")
    for args in (
        ("--status", "failed", "--type", NOT_UTF8),
        ("--status", "failed", "--type", NOT_UTF8 + ".*"),
    ):
        result = run(shop.app, "replay", *args)
        assert clean(result, 2).endswith("is not valid text (not UTF-8)"), result.stderr
        assert "Invalid value for '--type'" in result.stderr
    for option in ("--id", "--type"):  # no line was logged under text no store can keep
        result = run(shop.app, "deliveries", option, NOT_UTF8)
        assert clean(result, 2).endswith("is not valid text (not UTF-8)"), result.stderr
    assert shop.attempts("evt_1") == 1


# --json is strict JSON --------------------------------------------------------------------


class Lenient(Generic):
    """A custom scheme that parses with ``json.loads``, as the presets did before 0.2."""

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = json.loads(body)
        return Parsed(payload["id"], payload["type"], payload)


def test_show_json_stays_valid_when_a_number_overflows_a_float(shop: Shop, make_app: MakeApp) -> None:
    body = b'{"id": "evt_big", "type": "refund", "amount": 1e400, "fee": -1E+400, "rate": 1.5}'
    assert generic_post(shop.app.test_client(), body).status_code == 400  # the presets refuse it
    app = make_app(Hooks(provider=Lenient(), store="sqlite:///hostile.sqlite3"))
    assert generic_post(app.test_client(), body).status_code == 200  # kept, though no float holds it
    shown = run(app, "show", "evt_big", "--json")
    assert shown.exit_code == 0, shown.stderr
    doc = strict(shown.stdout)
    assert (doc["id"], doc["payload"], doc["body"]) == ("evt_big", None, body.decode())
    text = run(app, "show", "evt_big").stdout
    assert f"body:\n  {body.decode()}\n" in text and "Infinity" not in text
    for line in run(app, "deliveries", "--json").stdout.splitlines():
        strict(line)


# durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "--status", "failed", "--since"),
        ("purge", "--older-than"),
    ],
)
def test_durations_that_overflow_or_exceed_100_years_are_refused(shop: Shop, args: tuple[str, ...]) -> None:
    shop.post("evt_1")
    for value in (NINES + "h", NINES + ".5s", "36526d", "876601h"):
        result = run(shop.app, *args, value)
        assert clean(result, 2).endswith("is too long: at most 100 years (36525d)"), (value, result.stderr)
        assert "infs" not in result.output
    for value in ("-1d", "-0s"):
        assert "is not a duration" in clean(run(shop.app, *args, value), 2)
    assert run(shop.app, *args, "36525d").stdout in (
        "replayed 1: 1 failed\n",
        "hooks: purged 0 deliveries received more than 36525d ago\n",
    )


# a replay with nothing to run -----------------------------------------------------------------


def test_replaying_a_completed_delivery_says_nothing_ran(shop: Shop) -> None:
    shop.fixed = True
    shop.post("evt_1")
    result = run(shop.app, "replay", "evt_1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "replayed 0; nothing to run for 1 already received\n"
    assert shop.attempts("evt_1") == 1 and shop.booked == ["evt_1"]

    shop.fixed = False
    shop.post("evt_2")
    shop.fixed = True
    both = run(shop.app, "replay", "evt_1", "evt_2")
    assert both.exit_code == 0, both.stderr
    assert both.stdout == "replayed 1: 1 received; nothing to run for 1 already received\n"
    bulk = run(shop.app, "replay", "--status", "received")
    assert bulk.stdout == "replayed 0; nothing to run for 2 already received\n"

    named = run(shop.app, "replay", "evt_1", "--handler", "ledger.book")  # asked for: it runs
    assert named.exit_code == 0, named.stderr
    assert named.stdout == "replayed 1: 1 received\n"
    assert shop.attempts("evt_1") == 2 and shop.booked == ["evt_1", "evt_2", "evt_1"]


# forget while a handler runs ------------------------------------------------------------------


def test_forgetting_an_in_flight_delivery_is_refused_cleanly(shop: Shop) -> None:
    shop.fixed = True
    shop.post("evt_1")
    receiver = shop.hooks.receiver(shop.app)
    # A replay of one handler holds it.
    receiver.store.reopen(receiver.ns, "evt_1", now=receiver.now(), lease=60, rerun={"ledger.book"})
    result = run(shop.app, "forget", "evt_1")
    assert clean(result, 1) == (
        "Error: 'evt_1' is in flight (a sender's retry or a replay holds it):"
        " nothing was forgotten; try later"
    )
    assert shop.attempts("evt_1") == 1


def test_a_handler_replay_with_another_handler_still_owed_says_so_and_succeeds(shop: Shop) -> None:
    assert shop.post("evt_1") == 500  # ledger.book ran, billing.invoice failed
    result = run(shop.app, "replay", "evt_1", "--handler", "ledger.book")
    assert result.exit_code == 0, result.output
    assert "replayed 1: 1 ran, other handlers still owed" in result.output
    assert shop.booked == ["evt_1", "evt_1"]
    delivery = shop.hooks.inbox(shop.app).get("evt_1")
    assert delivery is not None and delivery.status == "failed"
    shop.fixed = True
    result = run(shop.app, "replay", "evt_1")  # the owed one, once fixed
    assert result.exit_code == 0 and "1 received" in result.output
    assert shop.booked == ["evt_1", "evt_1"]


def test_show_keeps_a_payload_line_whole_across_unicode_line_separators(shop: Shop) -> None:
    """``str.splitlines`` also splits at U+2028, U+2029 and U+0085, inside a JSON string."""
    payload = {"id": "evt_9", "type": "payment.succeeded", "note": "a\u2028b\x85c"}
    generic_post(shop.app.test_client(), payload)
    result = run(shop.app, "show", "evt_9")
    assert result.exit_code == 0, result.output
    [line] = [text for text in result.stdout.splitlines() if '"note"' in text]
    assert line.strip() == '"note": "a\\u2028b\\x85c"'


def test_a_replay_logs_no_control_character_a_sender_put_in_an_exception(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler's exception quotes the payload; the operator's terminal must not run it."""
    hooks = Hooks()

    @hooks.on("*")
    def echo(event: Any) -> None:
        raise RuntimeError(f"bad note {event.payload['note']}")

    app = make_app(hooks)
    payload = {"id": "evt_7", "type": "a.b", "note": "\x1b[2J\x1b]0;owned\x07"}
    assert generic_post(app.test_client(), payload).status_code == 500
    caplog.clear()
    result = run(app, "replay", "evt_7")
    assert result.exit_code == 1
    assert "bad note" in caplog.text and "Traceback" in caplog.text
    assert "\x1b" not in caplog.text and "\x07" not in caplog.text
    assert "\\x1b[2J" in caplog.text
    assert not logging.getLogger("flask_hooks").filters  # only while the command runs


def test_text_the_terminal_cannot_encode_is_escaped_not_a_crash(shop: Shop) -> None:
    """A Latin-1 terminal (or a Windows console redirected to a file) has no ``€``: the
    commands print it escaped instead of ending in a ``UnicodeEncodeError``."""
    shop.fixed = True
    assert shop.post("evt_€", "payment.€uro") == 200
    runner = shop.app.test_cli_runner(charset="latin-1")
    for args, shown in [
        (["deliveries"], "evt_\\u20ac  payment.\\u20acuro"),
        (["show", "evt_€"], '"type": "payment.\\u20acuro"'),
        (["replay", "--status", "received", "--dry-run"], "evt_\\u20ac  payment.\\u20acuro"),
        (["forget", "evt_€"], "forgot evt_\\u20ac"),
    ]:
        result = runner.invoke(args=["hooks", *args])
        assert result.exit_code == 0, (args, result.exception)
        assert shown in result.stdout_bytes.decode("latin-1"), (args, result.stdout)
