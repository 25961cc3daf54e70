"""The real entry point: ``flask hooks send`` from a shell against ``flask run``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.cli.conftest import FlaskRun

APP = '''
from flask import Flask
from flask_hooks import Hooks

hooks = Hooks(secret="run-secret")

@hooks.on("resource.*")
def sync(event):
    return {"synced": event.id}

app = Flask(__name__)
hooks.init_app(app)
'''


@pytest.mark.slow
def test_send_to_flask_run_then_read_the_log(flask_run: Callable[[str], FlaskRun]) -> None:
    server = flask_run(APP)
    sent = server.flask("hooks", "send", "resource.created", "--url", server.url, "--id", "evt_run",
                        "--data", '{"data": {"object": {"id": "r1"}}}')
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == '200  {"synced": "evt_run"}'

    again = server.flask("hooks", "send", "resource.created", "--url", server.url, "--id", "evt_run")
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1] == '200  {"synced": "evt_run"}'

    log = server.flask("hooks", "deliveries")
    assert log.returncode == 0, log.stderr
    rows = [line.split() for line in log.stdout.splitlines()[1:]]
    assert [row[3:6] for row in rows] == [["evt_run", "resource.created", "duplicate"],
                                          ["evt_run", "resource.created", "received"]]

    missing = server.flask("hooks", "send", "resource.created", "--url", server.url, "--data", "@nope.json")
    assert missing.returncode == 2
    assert "cannot read nope.json" in missing.stderr
    assert missing.stdout == ""


@pytest.mark.slow
def test_send_to_the_loopback_bypasses_the_environments_proxy(
    flask_run: Callable[[str], FlaskRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``http_proxy`` set and no ``no_proxy``, the forged delivery went to the proxy,
    its signature and the provider's token with it, though it was meant for this machine."""
    server = flask_run(APP)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # the discard port: nobody answers
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    sent = server.flask("hooks", "send", "resource.created", "--url", server.url, "--id", "evt_px")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == '200  {"synced": "evt_px"}'


INBOX_APP = '''
import json, pathlib
from flask import Flask
from flask_hooks import Hooks

here = pathlib.Path(__file__).parent
hooks = Hooks(secret="run-secret", store="sqlite:///" + str(here / "hooks.sqlite3"))

def effect(*item):
    with open(here / "effects.jsonl", "a") as f:
        f.write(json.dumps(item) + "\\n")

@hooks.on("payment", name="ledger.book")
def book(event):
    effect("book", event.id, event.replayed)

@hooks.on("payment.succeeded", name="billing.invoice")
def invoice(event):
    if not (here / "fixed").exists():
        raise KeyError("customer")
    effect("invoice", event.id, event.replayed)

app = Flask(__name__)
hooks.init_app(app)
'''


@pytest.mark.slow
def test_a_bug_the_fix_and_the_replay_across_processes(flask_run: Callable[[str], FlaskRun]) -> None:
    """The server and each command are separate processes sharing one SQLite file."""
    server = flask_run(INBOX_APP)
    here = server.app_file.parent
    assert str(here).startswith("/")  # an absolute sqlite:////... URL
    send = ("hooks", "send", "payment.succeeded", "--url", server.url, "--id", "evt_run")
    failed = server.flask(*send)
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-1].startswith("500  ")

    log = server.flask("hooks", "deliveries", "--status", "error", "--id", "evt_run")
    assert log.returncode == 0, log.stderr
    assert log.stdout.splitlines()[1].endswith("ledger.book  billing.invoice: KeyError: 'customer'")
    shown = server.flask("hooks", "show", "evt_run")
    assert "billing.invoice  failed" in shown.stdout and "KeyError: 'customer'" in shown.stdout

    (here / "fixed").touch()  # the fix is deployed
    replayed = server.flask("hooks", "replay", "evt_run")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == "replayed 1: 1 received\n"

    retry = server.flask(*send)  # the sender's retry, answered by the server from the shared file
    assert retry.returncode == 0
    assert '"duplicate"' in retry.stdout
    effects = [json.loads(line) for line in (here / "effects.jsonl").read_text().splitlines()]
    assert effects == [["book", "evt_run", False], ["invoice", "evt_run", True]]
